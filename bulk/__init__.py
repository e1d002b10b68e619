"""Bulk import: the /sync HTTP API and the page-task worker (`bulk/main.py`), and a local CLI
(`python -m bulk`)."""
