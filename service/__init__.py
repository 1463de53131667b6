"""imitaudit's HTTP service: API, storage, jobs and dashboard, on audit's public API."""
