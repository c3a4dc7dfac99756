"""Our own resumable download: Range requests into `<name>.part`, hashed as it streams, renamed
into place only when complete and matching the hub's hash.

huggingface_hub does not resume across processes (a new process starts an `.incomplete` file from
byte 0), so the bytes are fetched here with urllib; everything else (the file list and hashes, the
file's current metadata, URLs, auth headers) comes from huggingface_hub through `hub.py`.

A partial file survives pause, lost network, sleep and the app being killed. Before the next run
appends to it, three checks keep two versions of a file from being spliced together:
1. the caller (`download_queue.py`) has made sure the `.part` belongs to the file it asks for (a file
   that changed on the hub has its partial bytes thrown away);
2. `check_remote()` asks the hub for the file's current metadata (etag = sha256 or git blob id, and
   size): if that is not the file the partial bytes belong to, nothing is appended
   (`FileChangedError`, and the caller plans again);
3. the server must answer 206 with a Content-Range starting at our offset and ending at the size we
   expect; anything else and the file starts again from byte 0.
The finished file is hashed (sha256 for LFS files, git blob sha1 for others) before the rename.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import re
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
from app.models.error_text import network_error_text, os_error_text
from app.models.errors import (AccessNeededError, DiskFullError, FileChangedError, ModelManagerError,
                               NetworkError, NotFoundError, NotWritableError, OfflineError, VerifyError)
from app.models.hashing import CHUNK, hash_file, new_hasher
from app.models.hub import OFFLINE_MESSAGE, FileMetadata

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
SPACE_MARGIN_BYTES = 64 * 1024 * 1024
"""Free space left over beyond what a download (or a move of the models folder) writes."""
HASH_FAILURES_ALLOWED = 2
"""A file that arrives damaged this many times in a row stops the download."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + PART_SUFFIX)


def write_chunk(fh: BinaryIO, data: bytes) -> None:
    """The single place bytes hit the disk (tests replace it to simulate a full disk)."""
    fh.write(data)


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
    """A write that failed, as a message without errno text (the folder, the file, what to do)."""
    name = where.name[: -len(PART_SUFFIX)] if where.name.endswith(PART_SUFFIX) else where.name
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1):
        return DiskFullError(f"The disk is full while writing {name}. What was downloaded is kept: "
                             "free some space, then resume the download.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return NotWritableError(f"Cannot write to {where.parent}: {os_error_text(exc)}. "
                                "Choose another models folder.")
    return NotWritableError(f"Writing {name} in {where.parent} failed: {os_error_text(exc)}. What was downloaded "
                            "is kept: check the disk, then resume the download.")


def _http_error(exc: urllib.error.HTTPError, what: str) -> ModelManagerError:
    if exc.code in (401, 403):
        return AccessNeededError(f"Access to {what} was refused ({exc.code}): log in with a Hugging Face token "
                                 "that has accepted the model's terms (set HF_TOKEN, or run `hf auth login`).")
    if exc.code == 404:
        return NotFoundError(f"{what} was not found on the hub (404).")
    return NetworkError(f"The hub answered {exc.code} for {what}.")


def download_file(url: str, dest: Path, remote: RemoteFile, *, headers: dict[str, str],
                  on_bytes: Callable[[int, bool], None], should_stop: Callable[[], bool],
                  check_remote: Callable[[], FileMetadata] | None = None,
                  timeout: float = 30.0) -> Literal["done", "stopped"]:
    """Fetch `remote` into `dest` via `dest.part`, resuming what is there.

    `on_bytes(n, from_network)` is called for every chunk (hashing an existing partial file counts
    with from_network=False). `check_remote()` gives the file's current metadata on the hub; it is
    asked before anything is appended to a partial file. Returns "stopped" if `should_stop()` turned
    true (the partial file is kept). Raises NetworkError (retryable), FileChangedError (the hub
    serves another file now; nothing was appended), VerifyError (the partial file is removed), or
    another ModelManagerError.
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
        if check_remote is not None:
            current = check_remote()
            if not current.matches(remote):
                raise FileChangedError(f"{remote.name} on the hub is no longer the file this download started "
                                       "with; its partial copy is not added to.", name=remote.name)
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
                                 should_stop=should_stop, check_remote=None, timeout=timeout)
        if result == "stopped":
            return "stopped"
    size = part.stat().st_size
    if size != remote.size:
        raise NetworkError(f"{remote.name} ended at {size} of {remote.size} bytes.")
    digest = hasher.hexdigest()
    if expected is not None and digest != expected:
        part.unlink(missing_ok=True)
        kind = "sha256" if remote.sha256 else "git hash"
        raise VerifyError(f"{remote.name} arrived damaged: its {kind} does not match the hub's "
                          f"(got {digest[:12]}…, expected {expected[:12]}…).")
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise disk_error(exc, dest) from exc
    return "done"


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _fetch_rest(url: str, part: Path, remote: RemoteFile, offset: int, hasher, headers: dict[str, str],  # type: ignore[no-untyped-def]
                on_bytes: Callable[[int, bool], None], should_stop: Callable[[], bool],
                timeout: float) -> Literal["done", "stopped", "restart"]:
    if network.is_offline():                       # last guard: offline mode opens no connection
        raise OfflineError(OFFLINE_MESSAGE)
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
        raise NetworkError(f"The connection to the hub failed during {remote.name}: "
                           f"{network_error_text(exc)}.") from exc
    with resp:
        if offset and resp.status != 206:
            log.info("Server ignored the Range request for %s; starting it again", remote.name)
            return "restart"
        if offset:
            m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
            if m is None or int(m.group(1)) != offset or (m.group(3) != "*" and int(m.group(3)) != remote.size):
                log.warning("Unexpected Content-Range %r for %s; starting it again",
                            resp.headers.get("Content-Range"), remote.name)
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
                    raise NetworkError(f"The connection dropped during {remote.name}: "
                                       f"{network_error_text(exc)}.") from exc
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


@dataclass(frozen=True, slots=True)
class FileSource:
    """Where and how to fetch the files of one plan (from the hub client)."""

    url_for: Callable[[RemoteFile], str]
    headers: dict[str, str]
    check_remote: Callable[[RemoteFile, str], FileMetadata] | None = None   # (file, url) -> metadata now


def run_download(remote: RemoteModel, target_dir: Path, *, source: FileSource, stop: threading.Event,
                 on_progress: Callable[[ProgressSnapshot], None],
                 on_file_done: Callable[[RemoteFile], None], is_done: Callable[[RemoteFile], bool],
                 max_retries: int = 5, backoff_s: float = 1.0, progress_interval_s: float = 0.1,
                 timeout: float = 30.0,
                 on_notice: Callable[[str], None] | None = None) -> Literal["done", "stopped"]:
    """Download every file of `remote` not yet done into `target_dir`.

    A dropped connection is retried `max_retries` times per file with exponential backoff (the
    partial file is resumed each time); a file that arrives damaged is fetched once more, and a
    second damaged copy stops the download with a VerifyError that says what to do.
    `is_done(file)` says a file is already complete and verified; `on_file_done(file)` is called
    after each verified rename.
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
        return _download_pending(remote, pending, target_dir, source, stop, on_progress, on_file_done,
                                 meter, current, on_bytes, max_retries, backoff_s, timeout,
                                 on_notice or (lambda text: None))
    except ModelManagerError:
        on_progress(meter.snapshot(current[0]))     # the bar shows where it stopped
        raise


def _download_pending(remote: RemoteModel, pending: list[RemoteFile], target_dir: Path, source: FileSource,
                      stop: threading.Event, on_progress: Callable[[ProgressSnapshot], None],
                      on_file_done: Callable[[RemoteFile], None], meter: _Meter, current: list[str],
                      on_bytes: Callable[[int, bool], None], max_retries: int, backoff_s: float, timeout: float,
                      on_notice: Callable[[str], None]) -> Literal["done", "stopped"]:
    intact = len(remote.files) - len(pending)
    for f in pending:
        current[0] = f.name
        url = source.url_for(f)
        dest = target_dir / f.name
        check = None if source.check_remote is None else (lambda f=f, url=url: source.check_remote(f, url))
        network_failures = 0
        verify_failures = 0
        while True:
            start_done = meter.done
            try:
                result = download_file(url, dest, f, headers=source.headers, on_bytes=on_bytes,
                                       should_stop=stop.is_set, check_remote=check, timeout=timeout)
                break
            except FileChangedError:
                meter.done = start_done
                raise
            except NetworkError as exc:
                meter.done = start_done          # the partial file is re-hashed on the next try
                network_failures += 1
                if network_failures > max_retries:
                    raise
                delay = backoff_s * 2 ** (network_failures - 1)
                log.info("%s (try %d of %d in %.0f s)", exc, network_failures, max_retries, delay)
                on_notice(f"{exc} Trying again in {delay:g} s ({network_failures} of {max_retries}).")
                if stop.wait(delay):
                    return "stopped"
            except VerifyError as exc:
                meter.done = start_done
                verify_failures += 1
                log.info("%s", exc)
                if verify_failures >= HASH_FAILURES_ALLOWED:
                    raise VerifyError(
                        f"{f.name} arrived damaged {_times(verify_failures)} in a row (its hash did not match the "
                        f"hub's), so the download stopped. The damaged copy was deleted; the {intact} "
                        f"file{'s' if intact != 1 else ''} that arrived intact are kept. Try again later or on "
                        "another network; if it keeps happening, something between this computer and the hub "
                        "(a proxy, antivirus software or faulty network hardware) is changing the data.") from exc
                on_notice(f"{exc} Fetching it once more.")
        if result == "stopped":
            on_progress(meter.snapshot(f.name))
            return "stopped"
        intact += 1
        on_file_done(f)
    on_progress(meter.snapshot(""))
    return "done"


def _times(n: int) -> str:
    return {2: "twice", 3: "three times"}.get(n, f"{n} times")
