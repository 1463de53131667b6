"""The API's routers, one per resource: ops (health, metrics), uploads, audits, reports."""
