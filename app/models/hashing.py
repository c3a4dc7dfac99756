"""Streaming hashes that match the hub's metadata: sha256 for LFS files, git blob sha1 otherwise."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Protocol

CHUNK = 1 << 20


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


def new_hasher(*, sha256: str | None, blob_id: str | None, size: int) -> tuple[Hasher, str | None]:
    """A hasher and the digest it must end with (None: nothing to check against)."""
    if sha256:
        return hashlib.sha256(), sha256.lower()
    h = hashlib.sha1()
    h.update(b"blob %d\0" % size)        # git's object header: matches the hub's blobId
    return h, blob_id.lower() if blob_id else None


def hash_file(path: Path, hasher: Hasher, *, limit: int | None = None,
              on_bytes: Callable[[int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> int:
    """Feed the first `limit` bytes (all if None) of `path` to `hasher`; return bytes read."""
    done = 0
    with path.open("rb") as fh:
        while limit is None or done < limit:
            if should_stop is not None and should_stop():
                break
            want = CHUNK if limit is None else min(CHUNK, limit - done)
            data = fh.read(want)
            if not data:
                break
            hasher.update(data)
            done += len(data)
            if on_bytes is not None:
                on_bytes(len(data))
    return done
