"""Streaming uploads: the body goes to a temp file with a byte counter and a hash, never into memory whole.

Accepted bodies: ``multipart/form-data`` with the file in a part named ``file`` (and an
optional ``name`` field), or the raw bytes (``application/octet-stream``, name from the
``X-Imitaudit-Name`` header, percent-encoded UTF-8). Past ``limit`` bytes the upload is abandoned with
:class:`TooLarge` (the API answers 413); the temp file is removed on every failure.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

from service.blobs import BlobStore


def _text(raw: bytes) -> str:
    """A multipart header value as text: UTF-8 (what browsers send), else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class TooLarge(ValueError):
    """The upload passed the size cap."""


@dataclass(frozen=True, kw_only=True)
class Upload:
    """A finished upload, still in its temp file."""

    temp: Path
    sha256: str
    size: int
    name: str


async def receive(stream: AsyncIterator[bytes], content_type: str, *, store: BlobStore, limit: int, name: str = "") -> Upload:
    """Read an upload from ``stream`` into a temp file of ``store``.

    Raises:
        TooLarge: more than ``limit`` bytes.
        ValueError: not multipart or octet-stream, no ``file`` part, or an empty file.
    """
    ctype, params = parse_options_header(content_type or "")
    fd, temp = store.temp_file()
    out = os.fdopen(fd, "wb")
    digest = hashlib.sha256()
    state = {"size": 0, "part": None, "header": b"", "headers": {}, "found": False, "fields": {}}

    def write(data: bytes) -> None:
        state["size"] += len(data)
        if state["size"] > limit:
            raise TooLarge(f"upload larger than the limit of {limit} bytes")
        digest.update(data)
        out.write(data)

    try:
        if ctype == b"multipart/form-data":
            boundary = params.get(b"boundary")
            if not boundary:
                raise ValueError("multipart body without a boundary")

            def on_part_begin():
                state["headers"] = {}
                state["part"] = None

            def on_header_field(data, start, end):
                state["field"] = data[start:end].decode("latin-1").lower()

            def on_header_value(data, start, end):
                state["headers"][state["field"]] = state["headers"].get(state["field"], "") + data[start:end].decode("latin-1")

            def on_headers_finished():
                _, disp = parse_options_header(state["headers"].get("content-disposition", ""))
                part = disp.get(b"name", b"").decode("latin-1")
                state["part"] = part
                if part == "file":
                    if state["found"]:
                        raise ValueError("more than one 'file' part")
                    state["found"] = True
                    state["filename"] = _text(disp.get(b"filename", b""))

            def on_part_data(data, start, end):
                if state["part"] == "file":
                    write(data[start:end])
                elif state["part"]:
                    field = state["fields"].get(state["part"], b"") + data[start:end]
                    if len(field) > 1000:
                        raise ValueError(f"form field {state['part']!r} longer than 1000 bytes")
                    state["fields"][state["part"]] = field

            parser = MultipartParser(boundary, {
                "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
                "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
            })
            async for chunk in stream:
                parser.write(chunk)
            parser.finalize()
            if not state["found"]:
                raise ValueError("multipart upload has no part named 'file'")
            name = state["fields"].get("name", b"").decode("utf-8", "replace") or name or state.get("filename", "")
        elif ctype in (b"application/octet-stream", b""):
            async for chunk in stream:
                write(chunk)
        else:
            raise ValueError(f"unsupported content type {ctype.decode('latin-1')!r}: send multipart/form-data or application/octet-stream")
        out.close()
        if state["size"] == 0:
            raise ValueError("the uploaded file is empty")
        return Upload(temp=temp, sha256=digest.hexdigest(), size=state["size"], name=name[:200])
    except Exception:
        out.close()
        temp.unlink(missing_ok=True)
        raise
