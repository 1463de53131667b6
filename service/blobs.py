"""Content-addressed blob store: ``<data_dir>/blobs/<sha[:2]>/<sha>``, written atomically (temp file + rename).

A blob is only ever written under the hash of its bytes, so a crash mid-write leaves at
most a stray temp file, and two writers of the same bytes end with the same file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path


def _writer_alive(name: str) -> bool:
    """Whether the process a temp file is named after still runs (True when the name carries no pid)."""
    pid = name.split("-", 1)[0]
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BlobStore:
    """Blobs under ``root``."""

    def __init__(self, *, root: str | os.PathLike) -> None:
        self.root = Path(root)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def temp_file(self) -> tuple[int, Path]:
        """A fresh temp file (fd, path) on the store's file system, for streaming into."""
        fd, name = tempfile.mkstemp(dir=self.root / "tmp", prefix=f"{os.getpid()}-", suffix=".part")
        return fd, Path(name)

    def sweep_temp(self, *, idle_seconds: float = 3600.0) -> int:
        """Remove temp files left by killed uploads; returns how many.

        A temp file is named after the process writing it: one whose process is gone (on this
        host) is an orphan at once; one of another host's process, once nobody has written to it
        for ``idle_seconds``.
        """
        now, removed = time.time(), 0
        for temp in (self.root / "tmp").glob("*.part"):
            try:
                if not _writer_alive(temp.name) or now - temp.stat().st_mtime >= idle_seconds:
                    temp.unlink()
                    removed += 1
            except FileNotFoundError:  # finished or swept by another process meanwhile
                continue
        return removed

    def adopt(self, temp: Path, sha256: str) -> Path:
        """Move a finished temp file to its content address (fsynced); returns the blob path."""
        dest = self.path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temp, dest)
        return dest

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its sha256."""
        sha = hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            fd, temp = self.temp_file()
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.adopt(temp, sha)
        return sha

    def read_bytes(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()
