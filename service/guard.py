"""Browser safety and bounded requests, before any route runs: one middleware for every response.

- Write requests (any method but GET, HEAD, OPTIONS) under ``/v1/`` must carry their token in
  the ``Authorization`` header: the dashboard's cookie is for reading pages and artifacts, so a
  page of another site cannot spend it (no CSRF through the API).
- Form posts of the dashboard (``/login``, ``/logout``) from a foreign ``Origin`` are refused
  (no login CSRF).
- ``/login`` and ``/logout`` bodies are at most :data:`LOGIN_MAX_BYTES` (413; the route counts while reading, too).
- JSON routes take ``application/json`` bodies of at most ``max_json_bytes`` (413 past it,
  counted while streaming when no length is declared); uploads have their own cap.
- Control characters (NUL and the rest) in the path, the query or an upload's name are refused with 422.
- Every response carries security headers: a strict CSP, ``nosniff``, no framing, no referrer,
  and ``no-store`` for anything behind a token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, Response

SAFE = ("GET", "HEAD", "OPTIONS")
LOGIN_MAX_BYTES = 4096
"""A sign-in form holds one token: longer bodies are refused before they are read (the caller is not yet known)."""
UPLOADS = ("/v1/imitators", "/v1/demonstrations")
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # not no-referrer: under it browsers send "Origin: null" on same-site form posts
}


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=HEADERS)


def _foreign_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc != request.headers.get("host", "")


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def refusal(request: Request, max_json_bytes: int) -> Response | None:
    """The one-line error a request gets before reaching its route, or None."""
    path, method = request.url.path, request.method
    named = [
        ("path", path),
        *((f"query parameter {k[:50]}", v) for k, v in request.query_params.multi_items()),
        ("X-Imitaudit-Name", request.headers.get("x-imitaudit-name", "")),
    ]
    for where, text in named:
        if _has_control(text):
            return _error(422, f"control characters are not allowed in the {where}")
    if method in SAFE:
        return None
    if path in ("/login", "/logout") and _foreign_origin(request):
        return _error(403, "cross-site form posts are refused")
    declared = request.headers.get("content-length", "")
    if path in ("/login", "/logout") and declared.isdigit() and int(declared) > LOGIN_MAX_BYTES:
        return _error(413, f"a sign-in form is at most {LOGIN_MAX_BYTES} bytes")
    if not path.startswith("/v1/"):
        return None
    if not request.headers.get("authorization", "").lower().startswith("bearer "):
        return _error(
            401, "write requests need the token in the Authorization header (the dashboard's cookie only reads)"
        )
    if path in UPLOADS:
        return None
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_json_bytes:
        return _error(413, f"request body of {declared} bytes is over the limit of {max_json_bytes} bytes")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared not in ("", "0") and ctype != "application/json":
        return _error(415, f"send the body as application/json, not {ctype or 'no content type'}")
    return None


async def guard(
    request: Request, call_next: Callable[[Request], Awaitable[Response]], *, max_json_bytes: int
) -> Response:
    """The middleware: refuse, or pass on and add the security headers."""
    refused = refusal(request, max_json_bytes)
    if refused is not None:
        return refused
    if request.method not in SAFE and request.url.path.startswith("/v1/") and request.url.path not in UPLOADS:
        # read the JSON body here, counting, so a chunked body with no declared length is capped too;
        # Starlette hands the bytes read to the route
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_json_bytes:
                return _error(413, f"request body over the limit of {max_json_bytes} bytes")
            chunks.append(chunk)
        request._body = b"".join(chunks)  # noqa: SLF001 - what Request.body() caches, replayed to the route
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request._body and ctype != "application/json":  # noqa: SLF001 - a chunked body declared no length above
            return _error(415, f"send the body as application/json, not {ctype or 'no content type'}")
    response = await call_next(request)
    for key, value in HEADERS.items():
        response.headers.setdefault(key, value)
    if request.url.path.startswith(("/v1/", "/dashboard")):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
