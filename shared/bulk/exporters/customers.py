"""Customers → Klaviyo profiles through profile-bulk-import-jobs (≤10,000 profiles a request).

A batch reads keyset pages (500 customers, or just as many as still fit; the next page is read
while one is mapped) until it holds 10,000 profiles, the customers run out, or half the batch's
time is spent reading; then it sends them in one import job. The profile is `map_profile`'s,
exactly as the realtime function sends it; customers without an email are skipped, as in
realtime.

Import jobs are not polled. Klaviyo validates the request synchronously (a bad record makes it a
400, isolated by `send_profiles`), and the job's GET shares the 150/min budget with the POST:
polling each job until it is processed would spend that budget and stall every batch for the
processing time, for per-profile failures that the synchronous validation already rules out in
practice. `sent` therefore means "accepted into an import job" (as the batch contract defines
it); job ids are logged with the batch so an operator can look up a job's import errors.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from shared.bulk.base import Kind
from shared.bulk.exporters.keyset import KeysetExporter, Row, Sent, Shape, Source
from shared.commercetools.client import MAX_LIMIT, CommercetoolsClient
from shared.commercetools.models.customer import Customer
from shared.deadline import Deadline
from shared.klaviyo import MAX_BULK_PROFILES, KlaviyoClient
from shared.klaviyo.batches import ProfileRecord, send_profiles
from shared.mapping.customers import map_profile


class CustomersExporter(KeysetExporter[Customer, ProfileRecord]):
    kind: Kind = "customers"
    source = Source("customers", Customer, "customer")

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
        since: datetime | None = None,
    ) -> None:
        super().__init__(ct, klaviyo, page_size=page_size, since=since)
        if not 1 <= batch_size <= MAX_BULK_PROFILES:
            raise ValueError(f"batch_size must be between 1 and {MAX_BULK_PROFILES}")
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.rename = dict(rename or {})
        self.batch_size = batch_size
        self.list_id = list_id

    def shape(self) -> Shape:
        # One import job a batch; a customer is at most one profile, so pages never read more
        # than still fits and the batch ends exactly at a full request.
        return Shape(units=self.batch_size, per_record=1)

    def map_record(self, record: Customer, memo: dict[str, Any]) -> ProfileRecord | None:
        if not record.email:
            return None  # skipped, as in realtime
        attributes = map_profile(record, include=self.include, exclude=self.exclude,
                                 rename=self.rename)
        return ProfileRecord(record.id, attributes)

    def send(self, rows: list[Row[ProfileRecord]], deadline: Deadline) -> Sent:
        profiles = [r.payload for r in rows if r.payload is not None]
        outcome = send_profiles(self.klaviyo, profiles, deadline=deadline, list_id=self.list_id)
        return Sent([r.error for r in outcome.rejected], outcome.requests,
                    {"importJobIds": list(outcome.results)})
