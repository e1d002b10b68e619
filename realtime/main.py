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
from shared.processors import Context, enabled_processors
from shared.processors.dispatch import dispatch

settings = get_settings()
log.configure(settings.log_level)
processors = enabled_processors(settings)
klaviyo = KlaviyoClient.from_settings(settings)
commercetools = CommercetoolsClient.from_settings(settings)


@functions_framework.cloud_event
def handle_ct_message(cloud_event: CloudEvent) -> None:
    deadline = Deadline.after(settings.realtime_deadline_seconds)
    context = Context(settings, klaviyo, commercetools, deadline)
    dispatch(cloud_event.get_data(), processors, context)
