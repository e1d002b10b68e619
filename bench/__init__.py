"""Benchmarks: `python -m bench` (bulk throughput, rate-limit floor, realtime handler cost, cold
start). See bench/__main__.py and the README's Benchmarks section."""
