"""Realtime function: a commercetools subscription delivery (Pub/Sub CloudEvent) → Klaviyo writes.

Deploy/serve with `--target handle_ct_message`. Settings and clients are built once per instance,
at import, so a bad configuration fails the start-up with one line naming the variable.
"""

from __future__ import annotations

import functions_framework
from cloudevents.http.event import CloudEvent

from shared import log
from shared.commercetools.client import CommercetoolsClient
from shared.config import get_settings
from shared.deadline import Deadline
from shared.klaviyo.client import KlaviyoClient
from shared.klaviyo.limiter import shared_limiter
from shared.processors import Context, enabled_processors
from shared.processors.dispatch import dispatch

settings = get_settings()
log.configure(settings.log_level)
processors = enabled_processors(settings)
# One instance handles several deliveries at once (threads); the limiter keeps their bursts
# within Klaviyo's per-account limits instead of answering each other's 429s.
klaviyo = KlaviyoClient.from_settings(settings, limiter=shared_limiter())
commercetools = CommercetoolsClient.from_settings(settings)


@functions_framework.cloud_event
def handle_ct_message(cloud_event: CloudEvent) -> None:
    deadline = Deadline.after(settings.realtime_deadline_seconds)
    context = Context(settings, klaviyo, commercetools, deadline)
    dispatch(cloud_event.get_data(), processors, context)
