"""Demo and preview mode of `make run`: a commercetools sandbox with a sample shop, a Klaviyo
preview sink, and the "make a change" action (see deploy/local.py)."""
