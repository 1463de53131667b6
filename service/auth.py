"""API tokens: random secrets shown once, stored as SHA-256, scoped to one project with a role.

Roles: ``read`` (list and read) and ``submit`` (also upload, submit and cancel). A request
carries its token as ``Authorization: Bearer <token>`` or, from the dashboard, in the
HttpOnly cookie ``imitaudit_token``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db import Project, Token

ROLES = ("read", "submit")
COOKIE = "imitaudit_token"


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who is asking: a project and a role."""

    project_id: int
    project: str
    role: str

    def can_submit(self) -> bool:
        return self.role == "submit"


def request_token(headers, cookies) -> str | None:
    """The token a request carries: ``Authorization: Bearer`` first, else the dashboard's cookie."""
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return cookies.get(COOKIE)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, project: str, role: str, name: str = "") -> str:
    """Create (and the project if new) a token; returns the secret, which is not stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not project or len(project) > 200:
        raise ValueError("project must be a non-empty name of at most 200 characters")
    row = session.scalar(select(Project).where(Project.name == project))
    if row is None:
        row = Project(name=project)
        session.add(row)
        session.flush()
    secret = "ia_" + secrets.token_urlsafe(32)
    session.add(Token(project_id=row.id, role=role, token_hash=hash_token(secret), name=name))
    return secret


def list_tokens(session: Session) -> list[dict]:
    """Every token's id, project, role, name, creation time and whether it is revoked (never the secret)."""
    rows = session.execute(
        select(Token, Project).join(Project, Project.id == Token.project_id).order_by(Token.id)
    ).all()
    return [
        {
            "id": t.id,
            "project": p.name,
            "role": t.role,
            "name": t.name,
            "created": t.created.isoformat(timespec="seconds"),
            "revoked": t.revoked,
        }
        for t, p in rows
    ]


def revoke_token(session: Session, token_id: int) -> None:
    """Revoke token ``token_id``: from the next request on it is unknown.

    Raises:
        ValueError: no such token.
    """
    row = session.get(Token, token_id)
    if row is None:
        raise ValueError(f"no token with id {token_id} (imitaudit token list shows them)")
    row.revoked = True


def principal_for(session: Session, token: str | None) -> Principal | None:
    """The principal of a token, or None if it is unknown or revoked."""
    if not token:
        return None
    row = session.execute(
        select(Token, Project)
        .join(Project, Project.id == Token.project_id)
        .where(Token.token_hash == hash_token(token))
    ).first()
    if row is None or row[0].revoked:
        return None
    return Principal(project_id=row[1].id, project=row[1].name, role=row[0].role)
