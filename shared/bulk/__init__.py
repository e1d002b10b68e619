"""Bulk import: reading commercetools in keyset batches and writing Klaviyo through bulk jobs."""
