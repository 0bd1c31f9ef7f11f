"""Fixtures of the pipeline tests live in tests/conftest.py (shared with
tests/reliability): the trained environment and the session Prefect server."""
