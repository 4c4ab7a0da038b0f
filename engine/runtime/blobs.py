"""A content-addressed blob store on disk: large step outputs and inputs are written once and referenced.

A blob's name is the SHA-256 of its bytes, so writing the same payload twice stores it once, and a reference
cannot point at changed content. Files are written to a temporary name and renamed, so a crash never leaves a
half-written blob under a valid name. Several machines share blobs by pointing ``IONFLUX_BLOB_DIR`` at a shared
volume.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from engine.errors import IonfluxError


class BlobMissingError(IonfluxError):
    code = "blob.missing"


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, ref: str) -> Path:
        algo, _, digest = ref.partition(":")
        if algo != "sha256" or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise BlobMissingError(f"{ref!r} is not a blob reference", hint="references look like sha256:<64 hex>")
        return self.root / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        ref = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self._path(ref)
        if path.exists():
            return ref
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ref

    def get(self, ref: str) -> bytes:
        try:
            return self._path(ref).read_bytes()
        except FileNotFoundError:
            raise BlobMissingError(
                f"blob {ref} is not in {self.root}",
                hint="every process must see the same blob directory (IONFLUX_BLOB_DIR)",
            ) from None
