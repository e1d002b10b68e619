"""Fault-injection soak runs of both functions against the emulators and the HTTP fakes.

`python -m soak realtime|bulk [--messages N] [--seed S]` (see soak/__main__.py). The pieces:

  world.py     a seeded commercetools world: the data before and after a set of changes, and the
               subscription deliveries those changes produce (plus duplicates and malformed ones)
  expected.py  the Klaviyo state the final commercetools data implies (the connector's own
               mappers over the final data) and the comparison with the Klaviyo fake's state
  serve.py     one function served by functions-framework in its own process, every delivery it
               answers recorded (and, for the bulk worker, deaths injected between send and save)
  realtime.py  the realtime soak: Pub/Sub emulator push subscriptions → the realtime function;
               its peak phase and auth-outage window deliver through pusher.py
  pusher.py    Pub/Sub's push retry policy over the emulator's pull subscriptions (instances ×
               concurrency workers; the emulator's push loop loses messages refused together)
  limits.py    Klaviyo's per-account limits, scaled, enforced by the Klaviyo fake (peak phase)
  bulk.py      the bulk soak: /sync through the HTTP function, page tasks pushed to a worker that
               is killed at random points, job state in the Firestore emulator

Every loop is bounded in count and time; every address is on the loopback interface.
"""
