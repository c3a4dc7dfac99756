"""ModelManager: the one object the window, the command line and the welcome page talk to.

It puts together three parts, each usable and tested alone:
- `library.LocalLibrary`: what is on disk (scan, import, verify, delete);
- `download_queue.DownloadQueue`: downloads on worker threads (retries, resume across restarts,
  free space), and the same workers for verify and delete, so no caller starts threads of its own;
- `folder_move.move_tree`: moving the models folder (downloads paused around it).
It adds the catalog view (fit verdicts, sizes), the offline switch and the memory probe, and sends
every event to the listeners given to `subscribe()` (from worker threads: the panel queues them).

To download a catalog model, call `start_download(repo_id)` (e.g. "openai/gpt-oss-20b"): it
returns at once, resumes whatever a previous run left, and reports through `DownloadProgress` and
`DownloadStateChanged` events; `download_blocking(repo_id)` does the same and waits.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from app.models import network
from app.models.catalog import CATALOG, CatalogEntry, RemoteModel
from app.models.download_queue import DownloadQueue, JobStatus, RetryPolicy
from app.models.error_text import os_error_text
from app.models.errors import ModelManagerError
from app.models.events import (JobState, ManagerEvent, ModelsChanged, MoveFinished, MoveProgress, TaskFinished,
                               TaskProgress)
from app.models.fit import FitAssessment, SystemMemory, assess, probe_system
from app.models.folder_move import move_tree
from app.models.hub import fetch_remote_model
from app.models.library import DiskUsage, LocalLibrary, VerifyReport
from app.models.local import LocalModel, ModelState, inspect_model_dir, read_manifest
from app.models.units import format_bytes
from app.paths import default_models_dir  # noqa: F401 - re-exported for `python -m app.models`

log = logging.getLogger(__name__)

__all__ = ["CatalogRow", "DiskUsage", "JobStatus", "ModelManager", "RetryPolicy", "default_models_dir"]

SYSTEM_PROBE_WAIT_S = 8.0
"""How long `ModelManager.system` waits for the memory probe (nvidia-smi's own limit is 5 s)."""
PROGRESS_INTERVAL_S = 0.2
"""Verify progress events at most this often."""


@dataclass(frozen=True, slots=True)
class CatalogRow:
    entry: CatalogEntry
    fit: FitAssessment
    download_bytes: int
    download_exact: bool          # False: estimate (hub metadata not fetched yet)
    local: LocalModel | None
    job: JobStatus | None


class ModelManager:
    def __init__(self, models_dir: Path, *, endpoint: str | None = None, token: str | bool | None = None,
                 offline: bool | None = None, context_length: int = 8192, system: SystemMemory | None = None,
                 max_retries: int = 5, retry_backoff_s: float = 1.0, auto_retry_s: float | None = 60.0,
                 retry_limit: int | None = None) -> None:
        """`max_retries`/`retry_backoff_s`: quick retries of a dropped file; `auto_retry_s`: then wait this
        long and try again (None: stop at once), `retry_limit` times (None: until stopped)."""
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
        self._listeners: list[Callable[[ManagerEvent], None]] = []
        self._move_thread: threading.Thread | None = None
        self.library = LocalLibrary(models_dir)
        self.queue = DownloadQueue(self.library, emit=self._emit, endpoint=lambda: self.endpoint, token=token,
                                   policy=RetryPolicy(max_retries, retry_backoff_s, auto_retry_s, retry_limit))

    # ---- basics ------------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.library.models_dir

    @property
    def offline(self) -> bool:
        return network.is_offline()

    @offline.setter
    def offline(self, value: bool) -> None:
        """Offline on: running downloads stop (kept queued). Off again: they resume."""
        network.set_offline(value)
        if value:
            self.queue.stop_all(wait=False)
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
        return self.library.last_loaded

    @last_loaded.setter
    def last_loaded(self, path: Path | None) -> None:
        self.library.last_loaded = path

    # ---- catalog -----------------------------------------------------------------------
    def fit_for(self, entry: CatalogEntry, context: int | None = None) -> FitAssessment:
        """The "will it fit" verdict (app.models.fit) for a catalog model at this context length."""
        return assess(entry.memory_needed_bytes(context or self._context_length), self.system)

    def catalog_rows(self) -> list[CatalogRow]:
        rows = []
        for entry in CATALOG:
            folder = self.models_dir / entry.name
            local = self._with_job_state(inspect_model_dir(folder)) if folder.is_dir() else None
            remote = self.queue.remotes.get(entry.repo_id)
            if remote is None and local is not None:       # the sizes of the revision the folder holds
                manifest = read_manifest(folder)
                remote = manifest.remote() if manifest is not None and manifest.repo_id == entry.repo_id else None
            rows.append(CatalogRow(
                entry=entry, fit=self.fit_for(entry),
                download_bytes=remote.total_bytes if remote else entry.download_bytes_estimate,
                download_exact=remote is not None, local=local, job=self.job_status(entry.repo_id)))
        return rows

    def refresh_remote(self, repo_id: str) -> RemoteModel:
        """Fetch the exact file list, sizes and hashes from the hub (network)."""
        remote = fetch_remote_model(repo_id, endpoint=self.endpoint, token=self._token)
        self.queue.remotes[repo_id] = remote
        return remote

    # ---- local models ------------------------------------------------------------------
    def _with_job_state(self, model: LocalModel) -> LocalModel:
        entry = next((e for e in CATALOG if self.models_dir / e.name == model.path), None)
        if entry is None:
            return model
        status = self.job_status(entry.repo_id)
        if status is None or model.state == ModelState.READY and status.state != JobState.DOWNLOADING:
            return model
        if status.state in (JobState.PREPARING, JobState.DOWNLOADING, JobState.RETRYING):
            return replace(model, state=ModelState.DOWNLOADING, message=status.message)
        if status.state == JobState.PAUSED:
            return replace(model, state=ModelState.PAUSED, message="Paused: press Resume to continue.")
        if status.state == JobState.ERROR:
            return replace(model, state=ModelState.INCOMPLETE, message=status.message)
        return model

    def local_models(self) -> list[LocalModel]:
        return [m if m.imported else self._with_job_state(m) for m in self.library.scan()]

    def disk_usage(self) -> DiskUsage:
        return self.library.disk_usage()

    def import_folder(self, folder: Path) -> LocalModel:
        """Validate a folder holding a model (either layout) and list it, used in place."""
        model = self.library.import_folder(folder)
        self._emit(ModelsChanged())
        return model

    def forget_import(self, folder: Path) -> None:
        self.library.forget_import(folder)
        self._emit(ModelsChanged())

    def busy(self, folder: Path) -> str | None:
        """"verify" or "delete" while one runs on the folder (through the queue), else None."""
        return self.queue.task_running(folder)

    def delete(self, folder: Path) -> int:
        """Delete a model the app downloaded (stopping its download first); return the bytes freed.

        Imported folders are only forgotten (0 bytes freed): they belong to the user. Blocks: the
        window calls `start_delete`.
        """
        folder = Path(folder)
        entry = next((e for e in CATALOG if e.name == folder.name), None)
        if (entry is not None and not self.library.is_imported(folder)
                and folder.parent.resolve() == self.models_dir.resolve()):
            self.queue.forget(entry.repo_id)
        try:
            return self.library.delete(folder)
        finally:
            self._emit(ModelsChanged())

    def verify(self, folder: Path, on_progress: Callable[[int, int], None] | None = None) -> LocalModel:
        """Re-read every file of a model (slow); see `verify_report` for the result in words."""
        return self.verify_report(folder, on_progress).model

    def verify_report(self, folder: Path, on_progress: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> VerifyReport:
        report = self.library.verify(folder, on_progress, should_stop)
        self._emit(ModelsChanged())
        return report

    def start_verify(self, folder: Path) -> None:
        """Verify on the queue's worker: TaskProgress while reading, then one TaskFinished."""
        folder = Path(folder)
        in_models_dir = folder.parent.resolve() == self.models_dir.resolve()
        entry = next((e for e in CATALOG if e.name == folder.name and in_models_dir), None)
        if entry is not None and self.queue.is_running(entry.repo_id):
            raise ModelManagerError(f"{folder.name} is downloading: verify it once the download has ended.")

        def work(stop: threading.Event) -> None:
            last = [0.0]

            def tick(done: int, total: int) -> None:
                now = time.monotonic()
                if now - last[0] >= PROGRESS_INTERVAL_S or done == total:
                    last[0] = now
                    self._emit(TaskProgress("verify", folder, done, total))

            try:
                report = self.verify_report(folder, tick, stop.is_set)
                self._emit(TaskFinished("verify", folder, report.ok, report.message))
            except ModelManagerError as exc:
                self._emit(TaskFinished("verify", folder, False, str(exc)))
            except OSError as exc:
                self._emit(TaskFinished("verify", folder, False,
                                        f"Verifying {folder.name} failed: {os_error_text(exc)}."))

        self.queue.run_task("verify", folder, work)

    def start_delete(self, folder: Path) -> None:
        """Delete on the queue's worker (a running download of it is stopped first): one TaskFinished."""
        folder = Path(folder)
        imported = self.library.is_imported(folder)

        def work(stop: threading.Event) -> None:
            try:
                freed = self.delete(folder)
                message = (f"{folder.name} removed from the list; its files stay in {folder}." if imported
                           else f"{folder.name} deleted; {format_bytes(freed)} freed.")
                self._emit(TaskFinished("delete", folder, True, message))
            except ModelManagerError as exc:
                self._emit(TaskFinished("delete", folder, False, str(exc)))
            except OSError as exc:
                self._emit(TaskFinished("delete", folder, False,
                                        f"Could not delete {folder.name}: {os_error_text(exc)}."))

        self.queue.run_task("delete", folder, work)

    # ---- downloads ---------------------------------------------------------------------
    def job_status(self, repo_id: str) -> JobStatus | None:
        return self.queue.job_status(repo_id)

    def is_running(self, repo_id: str) -> bool:
        return self.queue.is_running(repo_id)

    def start_download(self, repo_id: str) -> None:
        """Download this catalog model (or resume it; while it waits to retry: try now).

        The entry point for every caller (panel, welcome page, command line): returns at once, and
        reports through DownloadProgress / DownloadStateChanged / RetryScheduled events. Raises
        OfflineError in offline mode, NotWritableError/DiskFullError for an unusable models folder,
        ModelManagerError for a repo that is not in the catalog. It does not ask whether the model
        fits this computer's memory: `fit_for(entry)` says, and the window asks the user first.
        """
        self.queue.start(repo_id)

    resume = start_download

    def download_blocking(self, repo_id: str) -> JobStatus:
        """Download in the calling thread's stead and wait (command line, tests)."""
        return self.queue.download_blocking(repo_id)

    def pause(self, repo_id: str, *, wait: bool = True) -> None:
        """Stop a download, keeping its bytes (`wait=False`: return at once; PAUSED is reported later)."""
        self.queue.pause(repo_id, wait=wait)

    def cancel(self, repo_id: str, *, wait: bool = True) -> None:
        """Stop a download and delete what it wrote (only .part files if the model was usable before);
        `wait=False`: return at once, the files are deleted on a worker (CANCELLED is reported then)."""
        self.queue.cancel(repo_id, wait=wait)

    def resume_pending(self) -> list[str]:
        """At start: resume the downloads that were running when the app last stopped (not paused ones)."""
        if self.offline:
            return []
        started = []
        for repo_id in self.queue.pending():
            try:
                self.start_download(repo_id)
                started.append(repo_id)
            except ModelManagerError as exc:
                self.queue.failed_to_start(repo_id, exc)
        return started

    def close(self, timeout: float = 3.0) -> None:
        """Stop every download (kept queued: the next start resumes them) and every verify.

        Waits at most `timeout` seconds in all, so quitting never hangs on the network.
        """
        self.queue.close(timeout)

    # ---- moving the models folder -----------------------------------------------------
    def move_models_dir(self, new_dir: Path, on_progress: Callable[[int, int, str], None] | None = None) -> Path:
        """Copy every file to `new_dir`, verify each copy, switch to it, then remove the old files.

        Until the switch the old folder is untouched, so an interrupted move leaves it usable.
        Imported folders stay where they are. Running downloads pause for the move and go on after.
        """
        old = self.models_dir
        paused = self.queue.stop_all(wait=True)
        try:
            def switch(new: Path) -> None:
                last = self.library.last_loaded
                self.library.models_dir = new
                if last is not None and last.is_relative_to(old):
                    self.library.last_loaded = new / last.relative_to(old)

            new = move_tree(old, Path(new_dir), on_switch=switch, on_progress=on_progress)
        finally:
            self.queue.restart(paused)
        self._emit(ModelsChanged())
        return new

    def start_move(self, new_dir: Path) -> None:
        """Move the models folder on a thread; reports MoveProgress and one MoveFinished."""
        if self._move_thread is not None and self._move_thread.is_alive():
            raise ModelManagerError("A move is already running.")

        def work() -> None:
            try:
                moved = self.move_models_dir(new_dir, lambda d, t, f: self._emit(MoveProgress(d, t, f)))
                self._emit(MoveFinished(moved, f"Models moved to {moved}."))
            except ModelManagerError as exc:
                self._emit(MoveFinished(None, f"{exc} The models are still in {self.models_dir}."))
            except OSError as exc:
                self._emit(MoveFinished(None, f"The move stopped ({os_error_text(exc)}); "
                                              f"the models are still in {self.models_dir}."))

        self._move_thread = threading.Thread(target=work, name="move-models", daemon=True)
        self._move_thread.start()
