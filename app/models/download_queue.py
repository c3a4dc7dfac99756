"""The download queue: jobs on worker threads, retries, resume across restarts, free space, and the
same workers for the slow folder tasks (verify, delete) so the window never starts threads itself.

The queue is `downloads.json` in the models folder: one item per catalog model with its state
("downloading" items resume at the next start, "paused" ones wait for Resume) and the revision
being fetched. What the bytes in a model folder belong to is its manifest (`local.Manifest`):
the commit and each file's size and hashes, written before the first byte of a plan.

Each attempt starts by asking the hub for the repo's current commit and file list. If that commit
is not the one the folder's files belong to (the repo was updated, or its history rewritten, since
the download started), the download says so and moves to the new commit as a whole: a file whose
size and hash are the same in both is kept (complete, or partial and resumed), a file that changed
loses its old bytes and is fetched again from byte 0, and a file the new commit no longer has is
removed. Two revisions are never mixed in one folder, and a vanished commit is never asked for.

Retries, in two layers (`RetryPolicy`): a connection dropped during a file is resumed at once a few
times with a short backoff (in `downloader.run_download`); after that, or when the hub cannot be
reached at all, the job waits (`wait_s`, a RETRYING state the window shows with a Retry button
that tries at once) and tries again, `retries` times (None: until stopped; the command line sets
a small number and then exits).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from app.jsonfile import read_json, write_json_atomic
from app.models import hub, network
from app.models.catalog import CatalogEntry, RemoteFile, RemoteModel, entry_for
from app.models.downloader import (PART_SUFFIX, SPACE_MARGIN_BYTES, FileSource, ProgressSnapshot, disk_error,
                                   part_path, run_download)
from app.models.errors import (DiskFullError, FileChangedError, ModelManagerError, NetworkError, NotFoundError,
                               OfflineError)
from app.models.events import (DownloadProgress, DownloadStateChanged, JobState, ManagerEvent, ModelsChanged,
                               RetryScheduled)
from app.models.library import LocalLibrary, check_writable
from app.models.local import Manifest, ModelState, inspect_model_dir, read_manifest, write_manifest
from app.models.units import format_bytes

log = logging.getLogger(__name__)

QUEUE_NAME = "downloads.json"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    file_retries: int = 5          # quick retries of one file after a dropped connection...
    backoff_s: float = 1.0         # ...the first after this long, then doubling
    wait_s: float | None = 60.0    # then (or when the hub cannot be reached at all) wait this long; None: stop
    retries: int | None = None     # how many such waits before giving up; None: until stopped


@dataclass(frozen=True, slots=True)
class JobStatus:
    repo_id: str
    state: JobState
    message: str = ""
    progress: ProgressSnapshot | None = None
    retry_in_s: float | None = None    # RETRYING: the wait announced
    reason: str = ""                   # RETRYING: what failed, without the "trying again" part


@dataclass(frozen=True, slots=True)
class RevisionChange:
    """What moving a folder's download to the hub's current commit did."""

    old_revision: str
    new_revision: str
    changed: tuple[str, ...]          # fetched again from the new revision
    removed: tuple[str, ...]          # no longer in the repo: deleted
    kept: int                         # files whose bytes are the same in both

    def message(self, title: str) -> str:
        head = (f"{title} changed on the hub since this download started "
                f"(revision {self.old_revision[:7]} → {self.new_revision[:7]}).")
        if self.changed:
            names = ", ".join(self.changed[:3]) + ("…" if len(self.changed) > 3 else "")
            n = len(self.changed)
            return (f"{head} {n} changed file{'s are' if n != 1 else ' is'} fetched again from the new revision "
                    f"({names}); the {self.kept} unchanged {'are' if self.kept != 1 else 'is'} kept.")
        return f"{head} The files this download needs are the same in both: it carries on."


def move_to_revision(folder: Path, old: Manifest | None, fresh: RemoteModel) -> RevisionChange | None:
    """Make every byte in `folder` belong to `fresh`: drop the files (and partial files) of the
    manifest's revision whose content differs in `fresh`, and those `fresh` no longer has.
    None when there was nothing to move from (no manifest, or the same commit)."""
    if old is None or old.revision == fresh.revision:
        return None
    wanted = {f.name: f for f in fresh.files}
    changed, removed = [], []
    for name, rec in old.files.items():
        new = wanted.get(name)
        if new is not None and new.same_content(rec.size, rec.sha256, rec.blob_id):
            continue
        (changed if new is not None else removed).append(name)
        for path in (folder / name, part_path(folder / name)):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise disk_error(exc, path) from exc
    kept = sum(1 for f in fresh.files if f.name in old.files and f.name not in changed)
    return RevisionChange(old.revision, fresh.revision, tuple(sorted(changed)), tuple(sorted(removed)), kept)


@dataclass(eq=False)
class _Job:
    entry: CatalogEntry
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)     # stop, or "retry now"
    thread: threading.Thread | None = None
    cancel: bool = False
    closing: bool = False
    repair: bool = False
    failures: int = 0
    fetched: bool = False             # bytes came from the network in this attempt
    notice: str = ""                  # shown with the progress (e.g. the revision changed)

    @property
    def repo_id(self) -> str:
        return self.entry.repo_id


@dataclass(eq=False)
class _Task:
    kind: str
    folder: Path
    stop: threading.Event
    thread: threading.Thread


class DownloadQueue:
    """Catalog downloads and folder tasks on worker threads; events through `emit`."""

    def __init__(self, library: LocalLibrary, *, emit: Callable[[ManagerEvent], None],
                 endpoint: Callable[[], str], token: str | bool | None = None,
                 policy: RetryPolicy = RetryPolicy()) -> None:
        self.library = library
        self.policy = policy
        self.remotes: dict[str, RemoteModel] = {}      # the hub's last answer per repo (exact sizes)
        self._emit = emit
        self._endpoint = endpoint
        self._token = token
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._tasks: dict[Path, _Task] = {}
        self._statuses: dict[str, JobStatus] = {}
        for item in self._read_items():
            state = JobState.ERROR if item.get("state") == "error" else JobState.PAUSED
            self._statuses[item["repo_id"]] = JobStatus(item["repo_id"], state, item.get("message", ""))

    # ---- the queue file ------------------------------------------------------------------
    @property
    def _queue_path(self) -> Path:
        return self.library.models_dir / QUEUE_NAME

    def _read_items(self) -> list[dict[str, Any]]:
        raw = read_json(self._queue_path) or {}
        items = raw.get("jobs", []) if isinstance(raw, dict) else []
        return [i for i in items if isinstance(i, dict) and "repo_id" in i]

    def _save_item(self, repo_id: str, **changes: Any) -> None:
        with self._lock:
            items = self._read_items()
            item = next((i for i in items if i["repo_id"] == repo_id), None)
            if item is None:
                item = {"repo_id": repo_id}
                items.append(item)
            item.update(changes)
            write_json_atomic(self._queue_path, {"version": 1, "jobs": items})

    def _drop_item(self, repo_id: str) -> None:
        with self._lock:
            items = [i for i in self._read_items() if i["repo_id"] != repo_id]
            if items:
                write_json_atomic(self._queue_path, {"version": 1, "jobs": items})
            else:
                self._queue_path.unlink(missing_ok=True)

    # ---- state ---------------------------------------------------------------------------
    def job_status(self, repo_id: str) -> JobStatus | None:
        return self._statuses.get(repo_id)

    def is_running(self, repo_id: str) -> bool:
        job = self._jobs.get(repo_id)
        return job is not None and job.thread is not None and job.thread.is_alive()

    def running(self) -> list[str]:
        return [r for r in list(self._jobs) if self.is_running(r)]

    def _set_status(self, repo_id: str, state: JobState, message: str = "",
                    progress: ProgressSnapshot | None = None, **extra: Any) -> None:
        old = self._statuses.get(repo_id)
        if progress is None and old is not None and state in (JobState.DOWNLOADING, JobState.RETRYING,
                                                               JobState.PAUSED, JobState.ERROR):
            progress = old.progress
        self._statuses[repo_id] = JobStatus(repo_id, state, message, progress, **extra)
        self._emit(DownloadStateChanged(repo_id, state, message))

    # ---- downloads -----------------------------------------------------------------------
    def start(self, repo_id: str) -> None:
        """Start (or resume) downloading a catalog model; while it waits to retry: try now."""
        entry = entry_for(repo_id)
        if entry is None:
            raise ModelManagerError(f"{repo_id} is not a model Lantern can run.")
        if network.is_offline():
            raise OfflineError(hub.OFFLINE_MESSAGE)
        check_writable(self.library.models_dir)
        with self._lock:
            if self.is_running(repo_id):
                self._jobs[repo_id].wake.set()             # waiting to retry: now
                return
            folder = self.library.models_dir / entry.name
            before = inspect_model_dir(folder).state if folder.is_dir() else None
            job = _Job(entry, repair=before in (ModelState.READY, ModelState.CORRUPT, ModelState.UNVERIFIED))
            self._jobs[repo_id] = job
            self._save_item(repo_id, state="downloading", message="")
            job.thread = threading.Thread(target=self._run_job, args=(job,), name=f"download-{entry.name}",
                                          daemon=True)
            self._set_status(repo_id, JobState.PREPARING, "Asking the hub for the file list…")
            job.thread.start()

    def download_blocking(self, repo_id: str) -> JobStatus:
        """Download and wait for the end (command line, tests)."""
        self.start(repo_id)
        job = self._jobs[repo_id]
        assert job.thread is not None
        job.thread.join()
        status = self.job_status(repo_id)
        assert status is not None
        return status

    def pause(self, repo_id: str, *, wait: bool = True) -> None:
        """Stop a download, keeping what it fetched; the worker reports PAUSED once it has stopped."""
        self._stop_job(repo_id, cancel=False, wait=wait)

    def cancel(self, repo_id: str, *, wait: bool = True) -> None:
        """Stop a download and delete what it wrote (only .part files if the model was usable before).
        `wait=False`: return at once; the deleting happens on a worker (a job's own, or a task)."""
        if self.is_running(repo_id):
            self._stop_job(repo_id, cancel=True, wait=wait)
            return
        entry = entry_for(repo_id)
        if entry is None:
            self.forget(repo_id)
            return

        def discard(_stop: threading.Event | None = None) -> None:
            folder = self.library.models_dir / entry.name
            before = inspect_model_dir(folder).state if folder.is_dir() else None
            self._discard(entry, repair=before in (ModelState.READY, ModelState.CORRUPT, ModelState.UNVERIFIED))
            self.forget(repo_id)
            self._set_status(repo_id, JobState.CANCELLED, "Download cancelled.")
            self._emit(ModelsChanged())

        if wait:
            discard()
        else:
            self.run_task("cancel", self.library.models_dir / entry.name, discard)

    def forget(self, repo_id: str) -> None:
        """Stop the job (if any, keeping its files) and drop it from the queue."""
        self._stop_job(repo_id, cancel=False)
        self._drop_item(repo_id)
        self._jobs.pop(repo_id, None)
        self._statuses.pop(repo_id, None)

    def pending(self) -> list[str]:
        """The downloads that were running when the app last stopped (not paused ones): resume these."""
        return [i["repo_id"] for i in self._read_items() if i.get("state") == "downloading" or i.get("auto_resume")]

    def failed_to_start(self, repo_id: str, error: ModelManagerError) -> None:
        self._set_status(repo_id, JobState.ERROR, str(error))

    def stop_all(self, *, wait: bool) -> list[str]:
        """Stop every running download, keeping them queued as "downloading"; returns their ids."""
        stopped = self.running()
        for repo_id in stopped:
            self._stop_job(repo_id, cancel=False, closing=True, wait=wait)
        return stopped

    def restart(self, repo_ids: list[str]) -> None:
        for repo_id in repo_ids:
            self._jobs.pop(repo_id, None)
            try:
                self.start(repo_id)
            except ModelManagerError as exc:
                self._set_status(repo_id, JobState.ERROR, str(exc))

    def _stop_job(self, repo_id: str, *, cancel: bool, closing: bool = False, wait: bool = True) -> None:
        job = self._jobs.get(repo_id)
        if job is None:
            return
        job.cancel = job.cancel or cancel
        job.closing = closing
        job.stop.set()
        job.wake.set()
        if wait and job.thread is not None and job.thread is not threading.current_thread():
            job.thread.join(timeout=60)

    def _discard(self, entry: CatalogEntry, *, repair: bool) -> None:
        folder = self.library.models_dir / entry.name
        if not folder.is_dir():
            return
        if repair:
            for part in folder.glob("*" + PART_SUFFIX):
                part.unlink(missing_ok=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)

    # ---- the worker ----------------------------------------------------------------------
    def _run_job(self, job: _Job) -> None:
        """Thread body: attempt the download; after a lost connection wait and try again."""
        repo_id = job.repo_id
        try:
            result = self._attempt_until_done(job)
            if result == "done":
                self._finish_done(job)
            elif job.cancel:
                self._discard(job.entry, repair=job.repair)
                self.forget(repo_id)
                self._set_status(repo_id, JobState.CANCELLED, "Download cancelled.")
                log.info("Download of %s cancelled", repo_id)
            elif job.closing:                          # stays "downloading" in the queue: resumed next start
                if network.is_offline():
                    self._set_status(repo_id, JobState.PAUSED, "Paused: offline mode is on.")
            else:
                self._save_item(repo_id, state="paused", auto_resume=False)
                self._set_status(repo_id, JobState.PAUSED, "Paused.")
        except (ModelManagerError, OSError) as exc:
            folder = self.library.models_dir / job.entry.name
            err = exc if isinstance(exc, ModelManagerError) else disk_error(exc, folder / "x")
            try:
                self._save_item(repo_id, state="error", message=str(err), auto_resume=False)
            except OSError as write_error:
                log.warning("Cannot update the download queue: %s", write_error)
            self._set_status(repo_id, JobState.ERROR, str(err))
        except Exception as exc:  # noqa: BLE001 - report, never crash the thread silently
            log.exception("Download of %s failed", repo_id)
            message = f"The download stopped on an unexpected error ({type(exc).__name__}); see the log file."
            try:
                self._save_item(repo_id, state="error", message=message, auto_resume=False)
            except OSError:
                pass
            self._set_status(repo_id, JobState.ERROR, message)
        finally:
            self._emit(ModelsChanged())

    def _attempt_until_done(self, job: _Job) -> Literal["done", "stopped"]:
        policy = self.policy
        while True:
            try:
                return self._attempt(job)
            except ModelManagerError as exc:
                if job.stop.is_set():              # paused, cancelled, quitting or offline: not an error
                    return "stopped"
                if not isinstance(exc, NetworkError):
                    raise
                if network.is_offline() or policy.wait_s is None:
                    raise
                if job.fetched:                    # it got somewhere: count the tries afresh
                    job.failures = 0
                job.failures += 1
                if policy.retries is not None and job.failures > policy.retries:
                    tries = job.failures
                    raise type(exc)(f"Gave up after {tries} tr{'ies' if tries != 1 else 'y'}: {exc} "
                                    "What was downloaded is kept.") from exc
                wait = policy.wait_s
                reason = str(exc)
                log.info("%s: %s; trying again in %g s", job.repo_id, reason, wait)
                self._save_item(job.repo_id, state="downloading", message=reason)
                self._set_status(job.repo_id, JobState.RETRYING, f"{reason} Trying again in {wait:g} s.",
                                 retry_in_s=wait, reason=reason)
                self._emit(RetryScheduled(job.repo_id, reason, wait, job.failures, policy.retries))
                job.wake.clear()
                if not job.stop.is_set():
                    job.wake.wait(wait)            # woken early by stop, or by Retry (start() again)
                if job.stop.is_set():
                    return "stopped"
                self._set_status(job.repo_id, JobState.PREPARING, "Trying again…")

    def _attempt(self, job: _Job) -> Literal["done", "stopped"]:
        """One go at the whole download: plan, space check, every missing file. Raises on errors.
        A file the hub no longer serves as planned (changed, or its commit gone) makes it plan once more."""
        job.fetched = False
        for last in (False, True):
            remote, manifest = self._plan(job)
            try:
                return self._fetch(job, remote, manifest)
            except (FileChangedError, NotFoundError) as exc:
                if last or job.stop.is_set():
                    raise
                log.info("%s: planning again (%s)", job.repo_id, exc)
                if isinstance(exc, FileChangedError) and exc.name:
                    # Whatever the new plan says, those partial bytes are not the file's: from byte 0.
                    part_path(self.library.models_dir / job.entry.name / exc.name).unlink(missing_ok=True)
        raise AssertionError("unreachable")

    def _plan(self, job: _Job) -> tuple[RemoteModel, Manifest]:
        """Ask the hub for the current commit and files; make the folder's bytes belong to it."""
        folder = self.library.models_dir / job.entry.name
        fresh = hub.fetch_remote_model(job.repo_id, endpoint=self._endpoint(), token=self._token)
        self.remotes[job.repo_id] = fresh
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise disk_error(exc, folder / "x") from exc
        with self._lock:
            old = read_manifest(folder)
            change = move_to_revision(folder, old, fresh)
            manifest = self._manifest_for(folder, fresh, old)
        if change is not None:
            job.notice = change.message(job.entry.title)
            log.info("%s: %s", job.repo_id, job.notice)
            self._set_status(job.repo_id, JobState.PREPARING, job.notice)
        self._save_item(job.repo_id, revision=fresh.revision)
        return fresh, manifest

    def _manifest_for(self, folder: Path, remote: RemoteModel, old: Manifest | None) -> Manifest:
        """The folder's manifest for this revision, keeping the records of files with the same content."""
        new = Manifest.for_remote(remote)
        if old is not None:
            for name, rec in new.files.items():
                prev = old.files.get(name)
                if prev is not None and (prev.sha256, prev.blob_id, prev.size) == (rec.sha256, rec.blob_id, rec.size):
                    new.files[name] = prev
        try:
            write_manifest(folder, new)
        except OSError as exc:
            raise disk_error(exc, folder / ".lantern-manifest.json") from exc
        return new

    def _fetch(self, job: _Job, remote: RemoteModel, manifest: Manifest) -> Literal["done", "stopped"]:
        repo_id = job.repo_id
        folder = self.library.models_dir / job.entry.name
        remaining = 0
        for f in remote.files:
            if not manifest.is_file_done(folder, f.name):
                part = part_path(folder / f.name)
                remaining += f.size - (part.stat().st_size if part.exists() else 0)
        free = shutil.disk_usage(folder).free
        if remaining + SPACE_MARGIN_BYTES > free:
            raise DiskFullError(f"Not enough free space: needs {format_bytes(remaining)}, "
                                f"{format_bytes(free)} free.", needed_bytes=remaining, free_bytes=free)
        token = self._token
        endpoint = self._endpoint()
        source = FileSource(
            url_for=lambda f: hub.file_url(repo_id, remote.revision, f.name, endpoint=endpoint),
            headers=hub.hub_headers(token),
            check_remote=lambda f, url: hub.file_metadata(url, token=token, what=f.name))
        self._set_status(repo_id, JobState.DOWNLOADING, job.notice)

        def on_progress(p: ProgressSnapshot) -> None:
            if p.network_bytes:
                job.fetched = True
            self._statuses[repo_id] = JobStatus(repo_id, JobState.DOWNLOADING, job.notice, p)
            self._emit(DownloadProgress(repo_id, p))

        def on_file_done(f: RemoteFile) -> None:
            with self._lock:
                manifest.mark_verified(folder, f.name)
                write_manifest(folder, manifest)

        def on_notice(text: str) -> None:
            self._set_status(repo_id, JobState.DOWNLOADING, text)

        policy = self.policy
        return run_download(remote, folder, source=source, stop=job.stop, on_progress=on_progress,
                            on_file_done=on_file_done, is_done=lambda f: manifest.is_file_done(folder, f.name),
                            max_retries=policy.file_retries, backoff_s=policy.backoff_s, on_notice=on_notice)

    def _finish_done(self, job: _Job) -> None:
        state = inspect_model_dir(self.library.models_dir / job.entry.name)
        self.forget(job.repo_id)
        if state.state == ModelState.READY:
            self._set_status(job.repo_id, JobState.DONE, f"{job.entry.title} is ready.")
        else:
            self._set_status(job.repo_id, JobState.ERROR, state.message)

    # ---- folder tasks (verify, delete) ------------------------------------------------------
    def task_running(self, folder: Path) -> str | None:
        """"verify" or "delete" while one runs on `folder`, else None."""
        task = self._tasks.get(Path(folder))
        return task.kind if task is not None and task.thread.is_alive() else None

    def run_task(self, kind: str, folder: Path, work: Callable[[threading.Event], None]) -> None:
        """Run `work(stop)` on a worker thread; one task per folder at a time."""
        folder = Path(folder)
        with self._lock:
            busy = self.task_running(folder)
            if busy is not None:
                raise ModelManagerError(f"{folder.name} is busy: a {busy} is running.")
            stop = threading.Event()

            def body() -> None:
                try:
                    work(stop)
                except Exception:  # noqa: BLE001 - the work reports its own errors; never die silently
                    log.exception("%s of %s failed", kind, folder)
                finally:
                    with self._lock:
                        if self._tasks.get(folder) is task:
                            del self._tasks[folder]
                    self._emit(ModelsChanged())

            task = _Task(kind, folder, stop, threading.Thread(target=body, name=f"{kind}-{folder.name}", daemon=True))
            self._tasks[folder] = task
            task.thread.start()

    # ---- closing -----------------------------------------------------------------------------
    def close(self, timeout: float = 3.0) -> None:
        """Stop every download (kept queued, resumed next start) and task; wait at most `timeout`
        seconds in all (a thread stuck in a stalled read is a daemon: quitting never hangs)."""
        jobs = list(self._jobs.values())
        tasks = list(self._tasks.values())
        for job in jobs:
            self._stop_job(job.repo_id, cancel=False, closing=True, wait=False)
        for task in tasks:
            task.stop.set()
        deadline = time.monotonic() + timeout
        threads = [j.thread for j in jobs if j.thread is not None] + [t.thread for t in tasks]
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

