"""Our own resumable download: Range requests into `<name>.part`, hashed as it streams, renamed
into place only when complete and matching the hub's hash.

huggingface_hub does not resume across processes (hub-downloads.md), so files are fetched here
with urllib; the hub library only supplies metadata and auth headers (see `catalog.py`). A partial
file survives pause, lost network, sleep and the app being killed: the next run hashes what is
there and asks for the rest with `Range: bytes=N-`.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Literal

from app.models import network
from app.models.catalog import RemoteFile, RemoteModel
from app.models.errors import (AccessNeededError, DiskFullError, ModelManagerError, NetworkError,
                               NotFoundError, NotWritableError, OfflineError, VerifyError)
from app.models.hashing import CHUNK, hash_file, new_hasher

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
RETRYABLE = (NetworkError,)


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + PART_SUFFIX)


def write_chunk(fh: BinaryIO, data: bytes) -> None:
    """The single place bytes hit the disk (tests replace it to simulate a full disk)."""
    fh.write(data)


def resolve_url(endpoint: str, repo_id: str, revision: str, filename: str) -> str:
    return (f"{endpoint.rstrip('/')}/{repo_id}/resolve/{urllib.parse.quote(revision, safe='')}/"
            f"{urllib.parse.quote(filename)}")


class _RedirectKeepRange(urllib.request.HTTPRedirectHandler):
    """Follow the hub's redirects (to its CDN) keeping Range, dropping auth when the host changes."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            for key in list(new.headers):
                if key.lower() == "authorization":
                    del new.headers[key]
        return new


_opener = urllib.request.build_opener(_RedirectKeepRange)


def disk_error(exc: OSError, where: Path) -> ModelManagerError:
    name = where.name[: -len(PART_SUFFIX)] if where.name.endswith(PART_SUFFIX) else where.name
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1):
        return DiskFullError(f"The disk is full while writing {name}. What was downloaded is kept: "
                             "free some space, then resume the download.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return NotWritableError(f"Cannot write to {where.parent}: {exc.strerror}. Choose another models folder.")
    return NotWritableError(f"Cannot write {where}: {exc}")


def _http_error(exc: urllib.error.HTTPError, what: str) -> ModelManagerError:
    if exc.code in (401, 403):
        return AccessNeededError(f"Access to {what} was refused ({exc.code}): log in with a Hugging Face token "
                                 "that has accepted the model's terms.")
    if exc.code == 404:
        return NotFoundError(f"{what} was not found on the hub (404).")
    return NetworkError(f"The hub answered {exc.code} for {what}; will retry.")


def download_file(url: str, dest: Path, remote: RemoteFile, *, headers: dict[str, str],
                  on_bytes: Callable[[int, bool], None], should_stop: Callable[[], bool],
                  timeout: float = 30.0) -> Literal["done", "stopped"]:
    """Fetch `remote` into `dest` via `dest.part`, resuming what is there.

    `on_bytes(n, from_network)` is called for every chunk (hashing an existing partial file counts
    with from_network=False). Returns "stopped" if `should_stop()` turned true (the partial file is
    kept). Raises NetworkError (retryable), VerifyError (the partial file is removed), or another
    ModelManagerError.
    """
    part = part_path(dest)
    hasher, expected = new_hasher(sha256=remote.sha256, blob_id=remote.blob_id, size=remote.size)
    if not part.exists() and dest.is_file() and dest.stat().st_size == remote.size:
        # Complete file already in place (e.g. killed between rename and manifest update): check it.
        whole, expected_whole = new_hasher(sha256=remote.sha256, blob_id=remote.blob_id, size=remote.size)
        if hash_file(dest, whole, should_stop=should_stop) == remote.size and (
                expected_whole is None or whole.hexdigest() == expected_whole):
            on_bytes(remote.size, False)
            return "done"
        if should_stop():
            return "stopped"
    offset = part.stat().st_size if part.exists() else 0
    if offset > remote.size:
        part.unlink()
        offset = 0
    if offset:
        got = hash_file(part, hasher, limit=offset, on_bytes=lambda n: on_bytes(n, False), should_stop=should_stop)
        if got < offset:
            return "stopped"
    if offset < remote.size:
        result = _fetch_rest(url, part, remote, offset, hasher, headers, on_bytes, should_stop, timeout)
        if result == "restart":
            part.unlink(missing_ok=True)
            if offset:
                on_bytes(-offset, False)           # those bytes are fetched again: take them off the count
            return download_file(url, dest, remote, headers=headers, on_bytes=on_bytes,
                                 should_stop=should_stop, timeout=timeout)
        if result == "stopped":
            return "stopped"
    size = part.stat().st_size
    if size != remote.size:
        raise NetworkError(f"{remote.name} ended at {size} of {remote.size} bytes; will retry.")
    digest = hasher.hexdigest()
    if expected is not None and digest != expected:
        part.unlink(missing_ok=True)
        raise VerifyError(f"{remote.name} does not match the hub's hash (got {digest[:12]}…, "
                          f"expected {expected[:12]}…); it is fetched again.")
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise disk_error(exc, dest) from exc
    return "done"


def _fetch_rest(url: str, part: Path, remote: RemoteFile, offset: int, hasher, headers: dict[str, str],  # type: ignore[no-untyped-def]
                on_bytes: Callable[[int, bool], None], should_stop: Callable[[], bool],
                timeout: float) -> Literal["done", "stopped", "restart"]:
    if network.is_offline():                       # last guard: offline mode opens no connection
        raise OfflineError("Lantern is in offline mode: turn it off in Settings to download models.")
    req = urllib.request.Request(url, headers=dict(headers))
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = _opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:
            return "restart"
        raise _http_error(exc, remote.name) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise NetworkError(f"Connection to the hub failed ({getattr(exc, 'reason', exc)}); will retry.") from exc
    with resp:
        if offset and resp.status != 206:
            log.info("Server ignored the Range request for %s; starting it again", remote.name)
            return "restart"
        if offset:
            content_range = resp.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                log.warning("Unexpected Content-Range %r for %s; starting it again", content_range, remote.name)
                return "restart"
        try:
            fh = part.open("ab" if offset else "wb")
        except OSError as exc:
            raise disk_error(exc, part) from exc
        with fh:
            while True:
                if should_stop():
                    return "stopped"
                try:
                    data = resp.read1(CHUNK // 4)   # what has arrived; b"" at the end (or a cut)
                except (OSError, http.client.HTTPException) as exc:
                    raise NetworkError(f"The connection dropped during {remote.name}; will retry.") from exc
                if not data:
                    break
                try:
                    write_chunk(fh, data)
                    fh.flush()
                except OSError as exc:
                    raise disk_error(exc, part) from exc
                hasher.update(data)
                on_bytes(len(data), True)
            try:
                os.fsync(fh.fileno())
            except OSError as exc:
                raise disk_error(exc, part) from exc
    return "done"


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    done_bytes: int
    total_bytes: int
    speed_bps: float            # over the last few seconds, network bytes only
    eta_s: float | None
    current_file: str
    network_bytes: int          # fetched from the network in this run

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total_bytes if self.total_bytes else 0.0


class _Meter:
    """Bytes done, speed over a sliding window, time left."""

    WINDOW_S = 5.0

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.network = 0
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, n: int, from_network: bool) -> None:
        self.done += n
        if from_network:
            self.network += n
            now = time.monotonic()
            self._samples.append((now, self.network))
            while self._samples and now - self._samples[0][0] > self.WINDOW_S:
                self._samples.popleft()

    def speed(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def snapshot(self, current: str) -> ProgressSnapshot:
        speed = self.speed()
        eta = (self.total - self.done) / speed if speed > 0 else None
        return ProgressSnapshot(self.done, self.total, speed, eta, current, self.network)


def run_download(remote: RemoteModel, target_dir: Path, *, endpoint: str, headers: dict[str, str],
                 stop: threading.Event, on_progress: Callable[[ProgressSnapshot], None],
                 on_file_done: Callable[[RemoteFile], None], is_done: Callable[[RemoteFile], bool],
                 max_retries: int = 5, backoff_s: float = 1.0, progress_interval_s: float = 0.1,
                 timeout: float = 30.0,
                 on_notice: Callable[[str], None] | None = None) -> Literal["done", "stopped"]:
    """Download every file of `remote` not yet done into `target_dir`.

    Network errors are retried `max_retries` times per file with exponential backoff (the partial
    file is resumed each time); a hash mismatch refetches the file once. `is_done(file)` says a file
    is already complete and verified; `on_file_done(file)` is called after each verified rename.
    """
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, target_dir / "x") from exc
    meter = _Meter(remote.total_bytes)
    pending = []
    for f in remote.files:
        if is_done(f):
            meter.add(f.size, False)
        else:
            pending.append(f)
    last_emit = [0.0]
    current = [""]

    def on_bytes(n: int, from_network: bool) -> None:
        meter.add(n, from_network)
        now = time.monotonic()
        if now - last_emit[0] >= progress_interval_s:
            last_emit[0] = now
            on_progress(meter.snapshot(current[0]))

    on_progress(meter.snapshot(""))
    try:
        return _download_pending(remote, pending, target_dir, endpoint, headers, stop, on_progress, on_file_done,
                                 meter, current, on_bytes, max_retries, backoff_s, timeout,
                                 on_notice or (lambda text: None))
    except ModelManagerError:
        on_progress(meter.snapshot(current[0]))     # the bar shows where it stopped
        raise


def _download_pending(remote: RemoteModel, pending: list[RemoteFile], target_dir: Path, endpoint: str,
                      headers: dict[str, str], stop: threading.Event,
                      on_progress: Callable[[ProgressSnapshot], None], on_file_done: Callable[[RemoteFile], None],
                      meter: _Meter, current: list[str], on_bytes: Callable[[int, bool], None],
                      max_retries: int, backoff_s: float, timeout: float,
                      on_notice: Callable[[str], None]) -> Literal["done", "stopped"]:
    for f in pending:
        current[0] = f.name
        url = resolve_url(endpoint, remote.repo_id, remote.revision, f.name)
        dest = target_dir / f.name
        network_failures = 0
        verify_failures = 0
        while True:
            start_done = meter.done
            try:
                result = download_file(url, dest, f, headers=headers, on_bytes=on_bytes,
                                       should_stop=stop.is_set, timeout=timeout)
                break
            except NetworkError as exc:
                meter.done = start_done          # the partial file is re-hashed on the next try
                network_failures += 1
                if network_failures > max_retries:
                    raise
                delay = backoff_s * 2 ** (network_failures - 1)
                log.warning("%s (try %d of %d in %.0f s)", exc, network_failures, max_retries, delay)
                if stop.wait(delay):
                    return "stopped"
            except VerifyError as exc:
                meter.done = start_done
                verify_failures += 1
                log.warning("%s", exc)
                if verify_failures > 1:
                    raise
                on_notice(str(exc))
        if result == "stopped":
            on_progress(meter.snapshot(f.name))
            return "stopped"
        on_file_done(f)
    on_progress(meter.snapshot(""))
    return "done"
