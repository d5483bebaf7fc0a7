"""Pictures on disk, named by the SHA-256 of their bytes.

Identical uploads are stored once, a name never changes meaning, and a backup is a plain copy of the
folder. Writes go to a temporary file first, so a crash leaves either the whole file or none.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    size: int
    width: int
    height: int
    format: str


class ImageFiles:
    """A content-addressed folder: ``<root>/<first two hex digits>/<sha256>``.

    ``lock`` is held by every transaction that adds picture rows and by retention, so cleanup never
    deletes a file that a job being written is about to reference.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = asyncio.Lock()

    def path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> StoredFile:
        """Store the bytes (if not already there) and describe them; they must be a picture PIL reads."""
        sha256 = hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as picture:
            stored = StoredFile(sha256, len(data), picture.width, picture.height, picture.format or "")
        path = self.path(sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{sha256}.", suffix=".tmp")
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        return stored

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def stray_files(self, known: set[str]) -> Iterator[Path]:
        """Files no row names: leftovers of a crash between writing a file and committing its row.

        Only safe to act on while holding ``lock``.
        """
        if not self.root.is_dir():
            return
        for path in self.root.glob("??/*"):
            if path.name not in known:
                yield path
