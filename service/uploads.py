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
from typing import Any, BinaryIO

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


class _Sink:
    """The temp file an upload streams into, with its byte counter, hash and cap."""

    def __init__(self, out: BinaryIO, limit: int) -> None:
        self.out, self.limit, self.size, self.digest = out, limit, 0, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge(f"upload larger than the limit of {self.limit} bytes")
        self.digest.update(data)
        self.out.write(data)


class _Form:
    """A multipart body's parts as the parser meets them: the ``file`` part into the sink, short fields kept."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.part: str | None = None
        self.field = ""
        self.headers: dict[str, str] = {}
        self.fields: dict[str, bytes] = {}
        self.found = False
        self.filename = ""

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
        }

    def on_part_begin(self) -> None:
        self.headers, self.part = {}, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.field = data[start:end].decode("latin-1").lower()

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.headers[self.field] = self.headers.get(self.field, "") + data[start:end].decode("latin-1")

    def on_headers_finished(self) -> None:
        _, disp = parse_options_header(self.headers.get("content-disposition", ""))
        self.part = disp.get(b"name", b"").decode("latin-1")
        if self.part == "file":
            if self.found:
                raise ValueError("more than one 'file' part")
            self.found = True
            self.filename = _text(disp.get(b"filename", b""))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part == "file":
            self.sink.write(data[start:end])
        elif self.part:
            field = self.fields.get(self.part, b"") + data[start:end]
            if len(field) > 1000:
                raise ValueError(f"form field {self.part!r} longer than 1000 bytes")
            self.fields[self.part] = field


async def _read_form(stream: AsyncIterator[bytes], boundary: bytes | None, sink: _Sink, name: str) -> str:
    """Stream a multipart body's ``file`` part into ``sink``; the upload's name (form field, given, or file name)."""
    if not boundary:
        raise ValueError("multipart body without a boundary")
    form = _Form(sink)
    parser = MultipartParser(boundary, form.callbacks())  # type: ignore[arg-type]
    async for chunk in stream:
        parser.write(chunk)
    parser.finalize()
    if not form.found:
        raise ValueError("multipart upload has no part named 'file'")
    return form.fields.get("name", b"").decode("utf-8", "replace") or name or form.filename


async def receive(
    stream: AsyncIterator[bytes], content_type: str, *, store: BlobStore, limit: int, name: str = ""
) -> Upload:
    """Read an upload from ``stream`` into a temp file of ``store``.

    Raises:
        TooLarge: more than ``limit`` bytes.
        ValueError: not multipart or octet-stream, no ``file`` part, or an empty file.
    """
    ctype, params = parse_options_header(content_type or "")
    fd, temp = store.temp_file()
    out = os.fdopen(fd, "wb")
    sink = _Sink(out, limit)
    try:
        if ctype == b"multipart/form-data":
            name = await _read_form(stream, params.get(b"boundary"), sink, name)
        elif ctype in (b"application/octet-stream", b""):
            async for chunk in stream:
                sink.write(chunk)
        else:
            raise ValueError(
                f"unsupported content type {ctype.decode('latin-1')!r}: send multipart/form-data or "
                f"application/octet-stream"
            )
        out.close()
        if sink.size == 0:
            raise ValueError("the uploaded file is empty")
        return Upload(temp=temp, sha256=sink.digest.hexdigest(), size=sink.size, name=name[:200])
    except Exception:
        out.close()
        temp.unlink(missing_ok=True)
        raise
