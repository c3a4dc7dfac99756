"""ModelManager: the Qt-free core behind the model manager panel.

It owns the models folder: the download queue (`downloads.json`), imported folders
(`imports.json`) and the last loaded model (`.lantern-state.json`) live in it, so they move with it.
Downloads and long jobs run on plain threads and report through `subscribe()` callbacks.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from app.models import network
from app.models.catalog import CATALOG, CatalogEntry, RemoteFile, RemoteModel, entry_for, fetch_remote_model
from app.models.downloader import PART_SUFFIX, ProgressSnapshot, disk_error, part_path, run_download
from app.models.errors import (DiskFullError, InvalidModelError, ModelManagerError, NetworkError,
                               NotWritableError, OfflineError, VerifyError)
from app.models.events import (DownloadProgress, DownloadStateChanged, JobState, ManagerEvent, ModelsChanged,
                               MoveFinished, MoveProgress)
from app.models.fit import FitAssessment, SystemMemory, assess, probe_system
from app.models.hashing import CHUNK, hash_file, new_hasher
from app.jsonfile import read_json, write_json_atomic
from app.models.local import (LocalModel, Manifest, ModelState, folder_size, inspect_model_dir, read_manifest,
                              validate_model_dir, write_manifest)
from app.models.units import format_bytes
from app.paths import default_models_dir  # noqa: F401 - re-exported for `python -m app.models`

log = logging.getLogger(__name__)

SYSTEM_PROBE_WAIT_S = 8.0
"""How long `ModelManager.system` waits for the memory probe (nvidia-smi's own limit is 5 s)."""

QUEUE_NAME = "downloads.json"
IMPORTS_NAME = "imports.json"
STATE_NAME = ".lantern-state.json"
SPACE_MARGIN_BYTES = 64 * 1024 * 1024
MOVING_SUFFIX = ".moving"


def _app_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lantern")
    except PackageNotFoundError:
        return "dev"


def check_writable(folder: Path) -> None:
    """Create the folder if needed and prove a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".lantern-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"The disk holding {folder} is full.") from exc
        raise NotWritableError(f"The folder {folder} cannot be written ({exc.strerror or exc}). "
                               "Choose another models folder.") from exc


@dataclass(frozen=True, slots=True)
class JobStatus:
    repo_id: str
    state: JobState
    message: str = ""
    progress: ProgressSnapshot | None = None


@dataclass(frozen=True, slots=True)
class CatalogRow:
    entry: CatalogEntry
    fit: FitAssessment
    download_bytes: int
    download_exact: bool          # False: estimate (hub metadata not fetched yet)
    local: LocalModel | None
    job: JobStatus | None


@dataclass(frozen=True, slots=True)
class DiskUsage:
    models_bytes: int
    free_bytes: int
    total_bytes: int


@dataclass(eq=False)
class _Job:
    repo_id: str
    remote: RemoteModel | None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    status: JobStatus | None = None
    cancel: bool = False
    closing: bool = False
    repair: bool = False


class ModelManager:
    def __init__(self, models_dir: Path, *, endpoint: str | None = None, token: str | bool | None = None,
                 offline: bool | None = None, context_length: int = 8192, system: SystemMemory | None = None,
                 max_retries: int = 5, retry_backoff_s: float = 1.0, auto_retry_s: float | None = 60.0) -> None:
        self._models_dir = Path(models_dir).expanduser()
        self._endpoint = endpoint
        self._token = token
        if offline is not None:
            network.set_offline(offline)
        self._context_length = context_length
        self._system = system
        # RAM and GPU memory (nvidia-smi can take seconds): probed on a thread from the start, so the
        # window's first look at `system` (the Models panel, a load's memory check) does not wait for it.
        self._system_ready = threading.Event()
        if system is None:
            threading.Thread(target=self._probe_system, name="probe-system", daemon=True).start()
        else:
            self._system_ready.set()
        self._max_retries = max_retries
        self._backoff = retry_backoff_s
        self._auto_retry_s = auto_retry_s          # after retries fail (network gone, sleep): try again later
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._statuses: dict[str, JobStatus] = {}
        self._remotes: dict[str, RemoteModel] = {}
        self._listeners: list[Callable[[ManagerEvent], None]] = []
        self._move_thread: threading.Thread | None = None
        for item in self._read_queue():
            state = JobState.ERROR if item.get("state") == "error" else JobState.PAUSED
            self._statuses[item["repo_id"]] = JobStatus(item["repo_id"], state, item.get("message", ""))

    # ---- basics ------------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self._models_dir

    @property
    def offline(self) -> bool:
        return network.is_offline()

    @offline.setter
    def offline(self, value: bool) -> None:
        """Offline on: running downloads stop (kept queued). Off again: they resume."""
        network.set_offline(value)
        if value:
            for repo_id in list(self._jobs):
                if self.is_running(repo_id):
                    self._stop_job(repo_id, cancel=False, closing=True, wait=False)
        else:
            self.resume_pending()

    @property
    def context_length(self) -> int:
        return self._context_length

    @context_length.setter
    def context_length(self, value: int) -> None:
        self._context_length = int(value)

    @property
    def endpoint(self) -> str:
        return self._endpoint or network.default_endpoint()

    def _probe_system(self) -> None:
        try:
            self._system = probe_system()
        except Exception as exc:  # noqa: BLE001 - best effort: the property falls back to "GPU unknown"
            log.warning("could not probe this computer's memory: %s", exc)
        finally:
            self._system_ready.set()

    @property
    def system(self) -> SystemMemory:
        """This computer's RAM and GPUs (waits for the probe started with the manager if still running)."""
        if not self._system_ready.wait(SYSTEM_PROBE_WAIT_S):
            log.warning("the memory probe is taking long; GPU memory treated as unknown for now")
        if self._system is None:   # the probe failed or is stuck: RAM alone, GPU unknown (not cached)
            return probe_system(gpus=False)
        return self._system

    def subscribe(self, callback: Callable[[ManagerEvent], None]) -> None:
        self._listeners.append(callback)

    def unsubscribe(self, callback: Callable[[ManagerEvent], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _emit(self, event: ManagerEvent) -> None:
        for cb in list(self._listeners):
            try:
                cb(event)
            except Exception:  # noqa: BLE001 - a broken listener must not kill a download
                log.exception("Model manager listener failed")

    @property
    def last_loaded(self) -> Path | None:
        raw = read_json(self._models_dir / STATE_NAME) or {}
        value = raw.get("last_loaded") if isinstance(raw, dict) else None
        return Path(value) if value else None

    @last_loaded.setter
    def last_loaded(self, path: Path | None) -> None:
        raw = read_json(self._models_dir / STATE_NAME) or {}
        raw["last_loaded"] = str(path) if path is not None else None
        try:
            write_json_atomic(self._models_dir / STATE_NAME, raw)
        except OSError as exc:
            log.warning("Cannot remember the last loaded model: %s", exc)

    # ---- catalog -----------------------------------------------------------------------
    def fit_for(self, entry: CatalogEntry, context: int | None = None) -> FitAssessment:
        return assess(entry.memory_needed_bytes(context or self._context_length), self.system)

    def catalog_rows(self) -> list[CatalogRow]:
        rows = []
        for entry in CATALOG:
            folder = self._models_dir / entry.name
            local = self._with_job_state(inspect_model_dir(folder)) if folder.is_dir() else None
            remote = self._remotes.get(entry.repo_id)
            rows.append(CatalogRow(
                entry=entry, fit=self.fit_for(entry),
                download_bytes=remote.total_bytes if remote else entry.download_bytes_estimate,
                download_exact=remote is not None, local=local, job=self.job_status(entry.repo_id)))
        return rows

    def refresh_remote(self, repo_id: str) -> RemoteModel:
        """Fetch the exact file list, sizes and hashes from the hub (network)."""
        remote = fetch_remote_model(repo_id, endpoint=self.endpoint, token=self._token)
        self._remotes[repo_id] = remote
        return remote

    # ---- local models ------------------------------------------------------------------
    def _imports(self) -> list[Path]:
        raw = read_json(self._models_dir / IMPORTS_NAME) or {}
        return [Path(p) for p in raw.get("paths", [])] if isinstance(raw, dict) else []

    def _write_imports(self, paths: list[Path]) -> None:
        write_json_atomic(self._models_dir / IMPORTS_NAME, {"paths": [str(p) for p in paths]})

    def _with_job_state(self, model: LocalModel) -> LocalModel:
        entry = next((e for e in CATALOG if self._models_dir / e.name == model.path), None)
        if entry is None:
            return model
        status = self.job_status(entry.repo_id)
        if status is None or model.state == ModelState.READY and status.state != JobState.DOWNLOADING:
            return model
        if status.state in (JobState.PREPARING, JobState.DOWNLOADING):
            return replace(model, state=ModelState.DOWNLOADING, message=status.message)
        if status.state == JobState.PAUSED:
            return replace(model, state=ModelState.PAUSED, message="Paused: press Resume to continue.")
        if status.state == JobState.ERROR:
            return replace(model, state=ModelState.INCOMPLETE, message=status.message)
        return model

    def local_models(self) -> list[LocalModel]:
        models = []
        if self._models_dir.is_dir():
            for child in sorted(self._models_dir.iterdir()):
                if child.is_dir() and not child.name.startswith("."):
                    models.append(self._with_job_state(inspect_model_dir(child)))
        for path in self._imports():
            models.append(inspect_model_dir(path, imported=True))
        return models

    def disk_usage(self) -> DiskUsage:
        used = sum(m.size_bytes for m in self.local_models() if not m.imported)
        probe = self._models_dir
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        du = shutil.disk_usage(probe)
        return DiskUsage(used, du.free, du.total)

    def import_folder(self, folder: Path) -> LocalModel:
        """Validate a folder holding a model (either layout) and list it, used in place."""
        folder = Path(folder).expanduser().resolve()
        validate_model_dir(folder)             # raises InvalidModelError with the reason
        if folder.parent == self._models_dir.resolve():
            raise InvalidModelError(f"{folder.name} is already in the models folder.")
        with self._lock:
            paths = self._imports()
            if folder not in paths:
                paths.append(folder)
                self._write_imports(paths)
        self._emit(ModelsChanged())
        return inspect_model_dir(folder, imported=True)

    def forget_import(self, folder: Path) -> None:
        """Remove an imported folder from the list; its files stay where they are."""
        with self._lock:
            self._write_imports([p for p in self._imports() if p != Path(folder)])
        self._emit(ModelsChanged())

    def delete(self, folder: Path) -> int:
        """Delete a model the app downloaded (everything in its folder); return the bytes freed.

        Imported folders are only forgotten (0 bytes freed): they belong to the user.
        """
        folder = Path(folder)
        if folder in self._imports():
            self.forget_import(folder)
            return 0
        if folder.parent.resolve() != self._models_dir.resolve():
            raise ModelManagerError(f"{folder} is not in the models folder.")
        entry = next((e for e in CATALOG if e.name == folder.name), None)
        if entry is not None:
            self._stop_job(entry.repo_id, cancel=False)
            self._forget_job(entry.repo_id)
        freed = folder_size(folder)
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise NotWritableError(f"Could not delete {folder}: {exc}") from exc
        if self.last_loaded == folder:
            self.last_loaded = None
        self._emit(ModelsChanged())
        return freed

    def verify(self, folder: Path, on_progress: Callable[[int, int], None] | None = None) -> LocalModel:
        """Re-hash every file of a downloaded model against the hub's hashes (slow: reads all of it)."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest is None:
            model = inspect_model_dir(folder, imported=folder in self._imports())
            self._emit(ModelsChanged())
            return model
        total = sum(r.size for r in manifest.files.values())
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if on_progress is not None:
                on_progress(done[0], total)

        for name, rec in manifest.files.items():
            path = folder / name
            if not path.is_file():
                rec.verified = False
                continue
            hasher, expected = new_hasher(sha256=rec.sha256, blob_id=rec.blob_id, size=rec.size)
            n = hash_file(path, hasher, on_bytes=tick)
            ok = n == rec.size and (expected is None or hasher.hexdigest() == expected)
            if ok:
                manifest.mark_verified(folder, name)
            else:
                rec.verified, rec.corrupt = False, True
                log.warning("%s in %s does not match the hub's hash", name, folder)
        with self._lock:
            write_manifest(folder, manifest)
        self._emit(ModelsChanged())
        return inspect_model_dir(folder)

    # ---- downloads ---------------------------------------------------------------------
    def _read_queue(self) -> list[dict[str, Any]]:
        raw = read_json(self._models_dir / QUEUE_NAME) or {}
        items = raw.get("jobs", []) if isinstance(raw, dict) else []
        return [i for i in items if isinstance(i, dict) and "repo_id" in i]

    def _save_queue_item(self, repo_id: str, **changes: Any) -> None:
        with self._lock:
            items = self._read_queue()
            item = next((i for i in items if i["repo_id"] == repo_id), None)
            if item is None:
                item = {"repo_id": repo_id}
                items.append(item)
            item.update(changes)
            write_json_atomic(self._models_dir / QUEUE_NAME, {"version": 1, "jobs": items})

    def _drop_queue_item(self, repo_id: str) -> None:
        with self._lock:
            items = [i for i in self._read_queue() if i["repo_id"] != repo_id]
            path = self._models_dir / QUEUE_NAME
            if items:
                write_json_atomic(path, {"version": 1, "jobs": items})
            else:
                path.unlink(missing_ok=True)

    def _queued_remote(self, repo_id: str) -> RemoteModel | None:
        item = next((i for i in self._read_queue() if i["repo_id"] == repo_id), None)
        if item is None or "files" not in item:
            return None
        return RemoteModel(repo_id, item["revision"], tuple(RemoteFile.from_json(f) for f in item["files"]))

    def job_status(self, repo_id: str) -> JobStatus | None:
        return self._statuses.get(repo_id)

    def is_running(self, repo_id: str) -> bool:
        job = self._jobs.get(repo_id)
        return job is not None and job.thread is not None and job.thread.is_alive()

    def _set_status(self, repo_id: str, state: JobState, message: str = "",
                    progress: ProgressSnapshot | None = None) -> None:
        old = self._statuses.get(repo_id)
        if progress is None and old is not None and state in (JobState.DOWNLOADING, JobState.PAUSED, JobState.ERROR):
            progress = old.progress
        self._statuses[repo_id] = JobStatus(repo_id, state, message, progress)
        self._emit(DownloadStateChanged(repo_id, state, message))

    def start_download(self, repo_id: str) -> None:
        """Start (or resume) downloading a catalog model on a background thread."""
        entry = entry_for(repo_id)
        if entry is None:
            raise ModelManagerError(f"{repo_id} is not a model Lantern can run.")
        if self.offline:
            raise OfflineError("Lantern is in offline mode: turn it off in Settings to download models.")
        check_writable(self._models_dir)
        with self._lock:
            if self.is_running(repo_id):
                return
            folder = self._models_dir / entry.name
            before = inspect_model_dir(folder).state if folder.is_dir() else None
            job = _Job(repo_id, self._queued_remote(repo_id),
                       repair=before in (ModelState.READY, ModelState.CORRUPT, ModelState.UNVERIFIED))
            self._jobs[repo_id] = job
            self._save_queue_item(repo_id, state="downloading", message="")
            job.thread = threading.Thread(target=self._run_job, args=(job, entry), name=f"download-{entry.name}",
                                          daemon=True)
            self._set_status(repo_id, JobState.PREPARING, "Asking the hub for the file list…")
            job.thread.start()

    resume = start_download

    def download_blocking(self, repo_id: str) -> JobStatus:
        """Download in the calling thread's stead and wait (command line, tests)."""
        self.start_download(repo_id)
        job = self._jobs[repo_id]
        assert job.thread is not None
        job.thread.join()
        status = self.job_status(repo_id)
        assert status is not None
        return status

    def pause(self, repo_id: str) -> None:
        self._stop_job(repo_id, cancel=False)

    def cancel(self, repo_id: str) -> None:
        """Stop a download and delete what it wrote (only .part files if the model was usable before)."""
        if self.is_running(repo_id):
            self._stop_job(repo_id, cancel=True)
        else:
            entry = entry_for(repo_id)
            if entry is not None:
                folder = self._models_dir / entry.name
                before = inspect_model_dir(folder).state if folder.is_dir() else None
                self._discard(entry, repair=before in (ModelState.READY, ModelState.CORRUPT, ModelState.UNVERIFIED))
            self._forget_job(repo_id)
            self._set_status(repo_id, JobState.CANCELLED, "Download cancelled.")
            self._emit(ModelsChanged())

    def _stop_job(self, repo_id: str, *, cancel: bool, closing: bool = False, wait: bool = True) -> None:
        job = self._jobs.get(repo_id)
        if job is None:
            return
        job.cancel = job.cancel or cancel
        job.closing = closing
        job.stop.set()
        if wait and job.thread is not None and job.thread is not threading.current_thread():
            job.thread.join(timeout=60)

    def _forget_job(self, repo_id: str) -> None:
        self._drop_queue_item(repo_id)
        self._jobs.pop(repo_id, None)
        self._statuses.pop(repo_id, None)

    def _discard(self, entry: CatalogEntry, *, repair: bool) -> None:
        folder = self._models_dir / entry.name
        if not folder.is_dir():
            return
        if repair:
            for part in folder.glob("*" + PART_SUFFIX):
                part.unlink(missing_ok=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)

    def resume_pending(self) -> list[str]:
        """At start: resume the downloads that were running when the app last stopped (not paused ones)."""
        if self.offline:
            return []
        started = []
        for item in self._read_queue():
            if item.get("state") == "downloading" or item.get("auto_resume"):
                try:
                    self.start_download(item["repo_id"])
                    started.append(item["repo_id"])
                except ModelManagerError as exc:
                    self._set_status(item["repo_id"], JobState.ERROR, str(exc))
        return started

    def _headers(self) -> dict[str, str]:
        try:
            return dict(network.hub().utils.build_hf_headers(token=self._token, library_name="lantern",
                                                             library_version=_app_version()))
        except OfflineError:
            raise
        except Exception as exc:  # noqa: BLE001 - no auth header is better than no download
            log.warning("Could not build hub headers (%s); downloading anonymously", exc)
            return {}

    def _run_job(self, job: _Job, entry: CatalogEntry) -> None:
        """Thread body: attempt the download; after a lost connection wait and try again by itself."""
        repo_id = job.repo_id
        try:
            while True:
                try:
                    result = self._attempt(job, entry)
                except (NetworkError, OfflineError) as exc:
                    if self.offline or self._auto_retry_s is None:
                        raise
                    wait = self._auto_retry_s
                    msg = f"{exc} Trying again in {wait:.0f} s (or press Resume)."
                    self._save_queue_item(repo_id, state="error", message=str(exc), auto_resume=True)
                    self._set_status(repo_id, JobState.ERROR, msg)
                    if job.stop.wait(wait):
                        result = "stopped"
                    else:
                        self._save_queue_item(repo_id, state="downloading", message="")
                        continue
                break
            if result == "done":
                self._finish_done(job, entry)
            elif job.cancel:
                folder = self._models_dir / entry.name
                self._discard(entry, repair=job.repair)
                self._forget_job(repo_id)
                self._set_status(repo_id, JobState.CANCELLED, "Download cancelled.")
                log.info("Download of %s cancelled; %s removed", repo_id, folder)
            elif job.closing:                          # stays "downloading" in the queue: resumed next start
                if self.offline:
                    self._set_status(repo_id, JobState.PAUSED, "Paused: offline mode is on.")
            else:
                self._save_queue_item(repo_id, state="paused", auto_resume=False)
                self._set_status(repo_id, JobState.PAUSED, "Paused.")
        except (ModelManagerError, OSError) as exc:
            err = exc if isinstance(exc, ModelManagerError) else disk_error(exc, self._models_dir / entry.name / "x")
            try:
                self._save_queue_item(repo_id, state="error", message=str(err), auto_resume=False)
            except OSError:
                log.warning("Cannot update the download queue: %s", err)
            self._set_status(repo_id, JobState.ERROR, str(err))
        except Exception as exc:  # noqa: BLE001 - report, never crash the thread silently
            log.exception("Download of %s failed", repo_id)
            self._save_queue_item(repo_id, state="error", message=f"Unexpected error: {exc}", auto_resume=False)
            self._set_status(repo_id, JobState.ERROR, f"Unexpected error: {exc}")
        finally:
            self._emit(ModelsChanged())

    def _finish_done(self, job: _Job, entry: CatalogEntry) -> None:
        state = inspect_model_dir(self._models_dir / entry.name)
        self._forget_job(job.repo_id)
        if state.state == ModelState.READY:
            self._set_status(job.repo_id, JobState.DONE, f"{entry.title} is ready.")
        else:
            self._set_status(job.repo_id, JobState.ERROR, state.message)

    def _attempt(self, job: _Job, entry: CatalogEntry) -> str:
        """One go at the whole download: metadata, space check, every missing file. Raises on errors."""
        repo_id = job.repo_id
        folder = self._models_dir / entry.name
        remote = job.remote or self._remotes.get(repo_id) or self.refresh_remote(repo_id)
        job.remote = remote
        self._remotes[repo_id] = remote
        self._save_queue_item(repo_id, revision=remote.revision, files=[f.to_json() for f in remote.files])
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise disk_error(exc, folder / "x") from exc
        manifest = self._manifest_for(folder, remote)
        remaining = 0
        for f in remote.files:
            if not manifest.is_file_done(folder, f.name):
                part = part_path(folder / f.name)
                remaining += f.size - (part.stat().st_size if part.exists() else 0)
        free = shutil.disk_usage(folder).free
        if remaining + SPACE_MARGIN_BYTES > free:
            raise DiskFullError(f"Not enough free space: needs {format_bytes(remaining)}, "
                                f"{format_bytes(free)} free.", needed_bytes=remaining, free_bytes=free)
        headers = self._headers()
        self._set_status(repo_id, JobState.DOWNLOADING, "")

        def on_progress(p: ProgressSnapshot) -> None:
            self._statuses[repo_id] = JobStatus(repo_id, JobState.DOWNLOADING, "", p)
            self._emit(DownloadProgress(repo_id, p))

        def on_file_done(f: RemoteFile) -> None:
            with self._lock:
                manifest.mark_verified(folder, f.name)
                write_manifest(folder, manifest)

        def on_notice(text: str) -> None:
            self._set_status(repo_id, JobState.DOWNLOADING, text)

        return run_download(remote, folder, endpoint=self.endpoint, headers=headers, stop=job.stop,
                            on_progress=on_progress, on_file_done=on_file_done,
                            is_done=lambda f: manifest.is_file_done(folder, f.name),
                            max_retries=self._max_retries, backoff_s=self._backoff, on_notice=on_notice)

    def _manifest_for(self, folder: Path, remote: RemoteModel) -> Manifest:
        """The folder's manifest for this revision (keeping files verified with the same hash)."""
        old = read_manifest(folder)
        new = Manifest.for_remote(remote)
        if old is not None:
            for name, rec in new.files.items():
                prev = old.files.get(name)
                if prev is not None and (prev.sha256, prev.blob_id, prev.size) == (rec.sha256, rec.blob_id, rec.size):
                    new.files[name] = prev
        with self._lock:
            write_manifest(folder, new)
        return new

    def close(self, timeout: float = 3.0) -> None:
        """Stop every download, keeping them queued so the next start resumes them.

        Waits at most `timeout` seconds in all: a thread stuck in a stalled read is a daemon and
        its partial file is already on disk, so quitting never hangs on the network.
        """
        jobs = list(self._jobs.values())
        for job in jobs:
            self._stop_job(job.repo_id, cancel=False, closing=True, wait=False)
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None and job.thread is not threading.current_thread():
                job.thread.join(max(0.0, deadline - time.monotonic()))

    # ---- moving the models folder -----------------------------------------------------
    def move_models_dir(self, new_dir: Path, on_progress: Callable[[int, int, str], None] | None = None) -> Path:
        """Copy every file to `new_dir`, verify each copy, switch to it, then remove the old files.

        Until the switch the old folder is untouched, so an interrupted move leaves it usable.
        Imported folders stay where they are.
        """
        old = self._models_dir
        new = Path(new_dir).expanduser().resolve()
        if new == old.resolve() or new.is_relative_to(old.resolve()):
            raise ModelManagerError("Choose a folder outside the current models folder.")
        check_writable(new)
        paused = [r for r in list(self._jobs) if self.is_running(r)]
        for repo_id in paused:
            self._stop_job(repo_id, cancel=False, closing=True)
        try:
            files = []
            if old.is_dir():
                for dirpath, _dirs, names in os.walk(old):
                    for name in names:
                        src = Path(dirpath) / name
                        if src.is_file() and not src.is_symlink():
                            files.append(src)
            sources = {f.relative_to(old) for f in files}
            clashes = sorted({rel.parts[0] for rel in sources if (new / rel.parts[0]).exists()}
                             - _leftovers_of_a_move(new, sources))
            if clashes:
                raise ModelManagerError(f"{new} already holds {', '.join(clashes)}; choose an empty folder.")
            total = sum(f.stat().st_size for f in files)
            free = shutil.disk_usage(new).free
            if total + SPACE_MARGIN_BYTES > free:
                raise DiskFullError(f"Not enough free space: needs {format_bytes(total)}, {format_bytes(free)} free.",
                                    needed_bytes=total, free_bytes=free)
            done = 0
            for src in files:
                dst = new / src.relative_to(old)
                done = _copy_verified(src, dst, done, total, on_progress)
            self._models_dir = new
            for src in files:
                src.unlink(missing_ok=True)
            for dirpath, _dirs, _names in sorted(os.walk(old), key=lambda t: -len(t[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
            last = self.last_loaded
            if last is not None and last.is_relative_to(old):
                self.last_loaded = new / last.relative_to(old)
        finally:
            for repo_id in paused:
                self._jobs.pop(repo_id, None)
                try:
                    self.start_download(repo_id)
                except ModelManagerError as exc:
                    self._set_status(repo_id, JobState.ERROR, str(exc))
        self._emit(ModelsChanged())
        return new

    def start_move(self, new_dir: Path) -> None:
        """Move the models folder on a thread; reports MoveProgress and one MoveFinished."""
        if self._move_thread is not None and self._move_thread.is_alive():
            raise ModelManagerError("A move is already running.")

        def work() -> None:
            try:
                moved = self.move_models_dir(
                    new_dir, lambda d, t, f: self._emit(MoveProgress(d, t, f)))
                self._emit(MoveFinished(moved, f"Models moved to {moved}."))
            except ModelManagerError as exc:
                self._emit(MoveFinished(None, str(exc)))
            except OSError as exc:
                self._emit(MoveFinished(None, f"The move stopped ({exc}); the models are still in {self._models_dir}."))

        self._move_thread = threading.Thread(target=work, name="move-models", daemon=True)
        self._move_thread.start()


def _leftovers_of_a_move(new: Path, sources: set[Path]) -> set[str]:
    """Top-level names in `new` holding only what an interrupted move of `sources` wrote there."""
    ok = set()
    for top in {rel.parts[0] for rel in sources}:
        target = new / top
        if not target.exists():
            continue
        if target.is_file():
            if Path(top) in sources:
                ok.add(top)
            continue
        inside = [p.relative_to(new) for p in target.rglob("*") if p.is_file()]
        if all(rel in sources or (rel.name.endswith(MOVING_SUFFIX)
                                  and rel.with_name(rel.name[: -len(MOVING_SUFFIX)]) in sources)
               for rel in inside):
            ok.add(top)
    return ok


def _copy_verified(src: Path, dst: Path, done: int, total: int,
                   on_progress: Callable[[int, int, str], None] | None) -> int:
    """Copy one file through `<dst>.moving`, check the copy's sha256 against the source, rename."""
    import hashlib

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + MOVING_SUFFIX)
    src_hash = hashlib.sha256()
    try:
        with src.open("rb") as fin, tmp.open("wb") as fout:
            while data := fin.read(CHUNK):
                fout.write(data)
                src_hash.update(data)
                done += len(data)
                if on_progress is not None:
                    on_progress(done, total, src.name)
            fout.flush()
            os.fsync(fout.fileno())
        dst_hash = hashlib.sha256()
        hash_file(tmp, dst_hash)
        if dst_hash.hexdigest() != src_hash.hexdigest():
            raise VerifyError(f"The copy of {src.name} differs from the original; the move was stopped.")
        os.replace(tmp, dst)
        shutil.copystat(src, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(exc, dst) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return done
