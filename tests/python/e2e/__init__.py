"""End-to-end session tests (run by tests/e2e_sessions.rs); a package so its conftest never
shadows the API suite's `conftest` module."""
