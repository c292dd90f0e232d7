"""Test helpers that build things the tests and benchmarks need (tiny real VLM checkpoints).

Imported by tests/ and bench/ only; production code never imports it.
"""
