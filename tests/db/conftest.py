"""Fixtures of the db tests: ``db_settings`` is in tests/conftest.py (shared)."""
