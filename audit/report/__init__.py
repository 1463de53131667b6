"""The AuditReport: schema, building it from the audit's stages, renderings, and the gate's verdict."""
