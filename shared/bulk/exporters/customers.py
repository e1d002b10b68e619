"""Customers → Klaviyo profiles through profile-bulk-import-jobs (≤10,000 profiles a request).

A batch reads keyset pages (500 customers, or just as many as still fit) until it holds 10,000
profiles, the customers run out, or half the batch's time is spent reading; then it sends them
in one import job. The profile is `map_profile`'s, exactly as the realtime function sends it;
customers without an email are skipped, as in realtime.

Import jobs are not polled. Klaviyo validates the request synchronously (a bad record makes it a
400, isolated by `send_profiles`), and the job's GET shares the 150/min budget with the POST:
polling each job until it is processed would spend that budget and stall every batch for the
processing time, for per-profile failures that the synchronous validation already rules out in
practice. `sent` therefore means "accepted into an import job" (as the batch contract defines
it); job ids are logged with the batch so an operator can look up a job's import errors.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from pydantic import ValidationError

from shared.bulk.base import BatchResult, Kind, Tally
from shared.bulk.exporters._common import ReadBudget, next_page, sorted_ids
from shared.commercetools.client import MAX_LIMIT, CommercetoolsClient
from shared.commercetools.models.customer import Customer
from shared.deadline import Deadline
from shared.errors import ConnectorError
from shared.klaviyo import MAX_BULK_PROFILES, KlaviyoClient
from shared.klaviyo.batches import ProfileRecord, RecordError, send_profiles
from shared.log import get_logger
from shared.mapping.customers import map_profile

log = get_logger("bulk.customers")


class CustomersExporter:
    kind: Kind = "customers"

    def __init__(
        self,
        ct: CommercetoolsClient,
        klaviyo: KlaviyoClient,
        *,
        include: Collection[str] = (),
        exclude: Collection[str] = (),
        rename: Mapping[str, str] | None = None,
        page_size: int = MAX_LIMIT,
        batch_size: int = MAX_BULK_PROFILES,
        list_id: str | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_LIMIT:
            raise ValueError(f"page_size must be between 1 and {MAX_LIMIT}")
        if not 1 <= batch_size <= MAX_BULK_PROFILES:
            raise ValueError(f"batch_size must be between 1 and {MAX_BULK_PROFILES}")
        self.ct = ct
        self.klaviyo = klaviyo
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.rename = dict(rename or {})
        self.page_size = page_size
        self.batch_size = batch_size
        self.list_id = list_id

    def run_batch(
        self, *, after: str | None, ids: Sequence[str] | None, deadline: Deadline,
        through: str | None = None,
    ) -> BatchResult:
        wanted = sorted_ids(ids)
        budget = ReadBudget(deadline)
        tally = Tally()
        profiles: list[ProfileRecord] = []
        cursor, exhausted = after, False
        while True:
            # Never read more than fits: the batch ends exactly at a full request.
            limit = min(self.page_size, self.batch_size - len(profiles))
            page = next_page(self.ct, "customers", after=cursor, ids=wanted, limit=limit,
                             deadline=deadline, through=through)
            cursor, exhausted = page.cursor, page.exhausted
            tally.not_found.extend(page.missing)
            tally.read += len(page.docs)
            for doc in page.docs:
                try:
                    profile = self._profile(doc, tally)
                except ConnectorError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one record's problem, not the job's
                    tally.fail_unexpected(str(doc.get("id")), exc)
                    continue
                if profile is not None:
                    profiles.append(profile)
            if exhausted or len(profiles) >= self.batch_size or not budget.more():
                break

        outcome = send_profiles(self.klaviyo, profiles, deadline=deadline, list_id=self.list_id)
        tally.fail_all(outcome.rejected)
        result = tally.result(cursor=cursor, done=exhausted)
        log.info("customers batch exported", read=result.read, sent=result.sent,
                 skipped=result.skipped, failed=result.failed, cursor=cursor, done=exhausted,
                 requests=outcome.requests, importJobIds=outcome.results)
        return result

    def _profile(self, doc: dict, tally: Tally) -> ProfileRecord | None:
        ct_id = str(doc.get("id"))
        try:
            customer = Customer.model_validate(doc)
        except ValidationError:
            log.warning("customer document unreadable", ctCustomerId=ct_id)
            tally.fail(RecordError(ct_id=ct_id, code="unreadable_document"))
            return None
        if not customer.email:
            tally.skip(ct_id)
            return None
        attributes = map_profile(customer, include=self.include, exclude=self.exclude,
                                 rename=self.rename)
        return ProfileRecord(ct_id, attributes)

    def delete_batch(self, *, deadline: Deadline) -> BatchResult:
        raise NotImplementedError("deleting customers (Klaviyo profiles) is not supported")
