"""Pure functions from commercetools resources to Klaviyo payloads. No I/O here."""
