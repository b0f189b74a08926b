"""Benchmarks. Each measures its raw floor in the same run and ends with one line:
BENCH <id> <figure> <unit> floor=<figure> ratio=<ratio>"""
