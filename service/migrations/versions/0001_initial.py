"""Initial schema: projects, tokens, imitators, demonstrations, audits, flags."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        _ts("created"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        _ts("created"),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    for table in ("imitators", "demonstrations"):
        extra = [sa.Column("arch", sa.String(100), nullable=False)] if table == "imitators" else []
        op.create_table(
            table,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False, index=True),
            sa.Column("sha256", sa.String(64), nullable=False),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("size", sa.Integer, nullable=False),
            sa.Column("env_id", sa.String(200), nullable=False),
            *extra,
            sa.Column("summary", sa.JSON, nullable=False),
            _ts("created"),
            sa.UniqueConstraint("project_id", "sha256"),
        )
    op.create_table(
        "audits",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("imitator_sha", sa.String(64), nullable=False),
        sa.Column("demos_sha", sa.String(64), nullable=False),
        sa.Column("env_id", sa.String(200), nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        _ts("lease_expires", True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=True),
        sa.Column("summary", sa.JSON, nullable=True),
        sa.Column("report_sha", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False, index=True),
        _ts("started", True),
        _ts("finished", True),
        sa.UniqueConstraint("project_id", "idempotency_key"),
    )
    op.create_table(
        "flags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("audit_id", sa.String(32), sa.ForeignKey("audits.id"), nullable=False, index=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("env_id", sa.String(200), nullable=False),
        sa.Column("imitator_sha", sa.String(64), nullable=False),
        sa.Column("trajectory", sa.Integer, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("severity", sa.String(32), nullable=False),
        sa.Column("pvalue", sa.Float, nullable=False),
        sa.Column("strength", sa.Float, nullable=False),
        sa.Column("first_flag_step", sa.Integer, nullable=True),
        sa.Column("departed", sa.Boolean, nullable=True),
        _ts("created"),
    )


def downgrade() -> None:
    for table in ("flags", "audits", "demonstrations", "imitators", "tokens", "projects"):
        op.drop_table(table)
