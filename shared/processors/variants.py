"""A product's variant writes: what changed, as single requests or catalog variant bulk jobs.

A product's variant creates, updates and deletes go as catalog variant bulk jobs once there are
BULK_MIN_VARIANTS of a kind, as single requests below that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from shared.errors import KlaviyoError
from shared.klaviyo.batches import Rejected
from shared.klaviyo.bulk import CatalogOp
from shared.klaviyo.catalog import catalog_resource
from shared.klaviyo.catalog_jobs import CatalogJob, CatalogRecord, job_outcome, submit_catalog_jobs
from shared.log import get_logger
from shared.processors.base import Context
from shared.processors.catalog_objects import put

log = get_logger(__name__)

# A product sync sends its variant creates, updates and deletes as catalog variant bulk jobs
# (≤100 variants each) once there are this many of one kind; fewer go one request each. A job
# costs one POST plus its polls, from the same 75/s, 700/min budget as single writes: from 3
# variants on it costs about as many requests as single calls, and far fewer as the count grows
# (10 or 100 variants: a POST and a few polls instead of 10 or 100 requests). Below that,
# single calls cost no more and need no waiting.
BULK_MIN_VARIANTS = 3
# Polling a realtime variant job: the first poll right after it was started, then after 0.5 s,
# each wait 1.5 times the previous, at most 4 s. While a job runs the delivery holds an instance
# (billed, and counting against its concurrency) and the product change is not in Klaviyo yet,
# and a job of ≤100 variants is expected to take seconds, not minutes: so the first waits are
# short. The backoff keeps a job that sits in Klaviyo's queue from spending the shared catalog
# budget: at most 15 polls a minute once at 4 s, 16 in all within the default 50 s deadline.
# Jobs are waited for in the order they were started (Klaviyo works through them roughly in that
# order), each with its own backoff, so later jobs usually answer `complete` at their first poll.
JOB_POLL_FIRST = 0.5
JOB_POLL_BACKOFF = 1.5
JOB_POLL_MAX = 4.0

_VARIANT_OPS: tuple[CatalogOp, ...] = ("create", "update", "delete")


@dataclass(frozen=True)
class VariantWrite:
    sku: str
    attributes: dict[str, Any]
    relationships: dict[str, Any] | None
    exists: bool  # Klaviyo lists it for the item: an update, else a create

    @property
    def op(self) -> CatalogOp:
        return "update" if self.exists else "create"


@dataclass(frozen=True)
class VariantOutcome:
    jobs: int
    retried: int
    refused: list[KlaviyoError]  # terminal refusals, one per variant


def write_variants(ctx: Context, product_id: str, changed: Sequence[VariantWrite],
                   removed: Sequence[str]) -> VariantOutcome:
    """Write the changed variants and delete the removed SKUs.

    Variant changes go as bulk jobs from BULK_MIN_VARIANTS of a kind on (a 100-variant product
    costs a few requests instead of a hundred; see there), fewer as single calls. A job's
    outcome is known only by polling it; polled briefly (JOB_POLL_*), the delivery waits
    about as long as Klaviyo takes to run the job. If the deadline comes first, the delivery
    raises and is redelivered; the redelivery lists the variants again and, since variants
    Klaviyo already holds unchanged are skipped, writes only what the job had not. Records a
    job reports as failed (e.g. a create that lost a race with another instance and now
    exists) are retried one by one with `put`, which repairs a race and makes a genuinely
    invalid variant fail loudly (terminal: logged and acknowledged), as single calls do.
    """
    jobs: list[CatalogJob] = []
    rejected: list[Rejected[CatalogRecord]] = []
    # The SKU stands in for a record's CT id: a refused record is traced back by it.
    records: dict[CatalogOp, list[CatalogRecord]] = {
        "create": [CatalogRecord(w.sku, catalog_resource("variant", "create", w.sku,
                                                         w.attributes, w.relationships))
                   for w in changed if not w.exists],
        "update": [CatalogRecord(w.sku, catalog_resource("variant", "update", w.sku,
                                                         w.attributes, w.relationships))
                   for w in changed if w.exists],
        "delete": [CatalogRecord(sku, catalog_resource("variant", "delete", sku))
                   for sku in removed],
    }
    bulk_ops = {op for op, group in records.items() if len(group) >= BULK_MIN_VARIANTS}
    for op in _VARIANT_OPS:
        if op in bulk_ops:
            started, refused = _start_variant_jobs(ctx, op, records[op])
            jobs += started
            rejected += refused
    single_writes = [w for w in changed if w.op not in bulk_ops]
    single_deletes = [] if "delete" in bulk_ops else list(removed)
    # Single calls go while Klaviyo works on the jobs.
    failures = _write_variants_singly(ctx, product_id, single_writes, single_deletes)
    if jobs:
        rejected += _wait_for_variant_jobs(ctx, jobs)
    retried = 0
    if rejected:
        by_sku = {w.sku: w for w in changed}
        skus = list(dict.fromkeys(r.item.ct_id for r in rejected))
        log.warning("variant bulk records refused; retried one by one", ctProductId=product_id,
                    skus=skus, codes=sorted({str(r.error.code) for r in rejected}))
        failures += _write_variants_singly(
            ctx, product_id, [by_sku[sku] for sku in skus if sku in by_sku],
            [sku for sku in skus if sku not in by_sku])
        retried = len(skus)
    return VariantOutcome(len(jobs), retried, failures)


def _write_variants_singly(
    ctx: Context, product_id: str, writes: Sequence[VariantWrite], deletes: Sequence[str],
) -> list[KlaviyoError]:
    """One request per variant (`put`; delete where 404 means done).

    A terminal refusal of one variant does not stop the others: it is logged and returned, and
    the caller decides once every variant was tried. Retryable errors raise at once (the
    redelivery writes only what is still missing).
    """
    refused: list[KlaviyoError] = []

    def attempt(sku: str, write: Any) -> None:
        try:
            write()
        except KlaviyoError as exc:
            if exc.retryable:
                raise
            log.warning("variant refused by Klaviyo", ctProductId=product_id, sku=sku,
                        **exc.log_fields())
            refused.append(exc)

    for w in writes:
        attempt(w.sku, partial(put, ctx, "variant", w.sku, w.attributes, w.relationships,
                               exists=w.exists))
    for sku in deletes:
        attempt(sku, partial(ctx.klaviyo.delete_catalog_variant, sku, deadline=ctx.deadline))
    return refused


def _start_variant_jobs(
    ctx: Context, op: CatalogOp, records: list[CatalogRecord],
) -> tuple[list[CatalogJob], list[Rejected[CatalogRecord]]]:
    """Variant bulk jobs of ≤100 records; records Klaviyo refused a job for are isolated (the
    rest still go) and returned for a retry one by one."""
    jobs, submitted = submit_catalog_jobs(ctx.klaviyo, "variant", op, records,
                                          deadline=ctx.deadline)
    return jobs, submitted.rejected


def _wait_for_variant_jobs(
    ctx: Context, jobs: list[CatalogJob],
) -> list[Rejected[CatalogRecord]]:
    """Poll each job until it is done (DeadlineExceeded if the deadline comes first); the
    records the finished jobs report as failed, or cannot vouch for (a cancelled job, a failure
    count without errors naming the records)."""
    klaviyo = ctx.klaviyo
    for job in jobs:
        job.attributes = klaviyo.wait_for_job(
            partial(klaviyo.get_catalog_bulk_job, "variant", job.op), job.job_id,
            deadline=ctx.deadline, poll_interval=JOB_POLL_FIRST, backoff=JOB_POLL_BACKOFF,
            max_interval=JOB_POLL_MAX,
        )
    return job_outcome(jobs).rejected
