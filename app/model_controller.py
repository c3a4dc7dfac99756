"""Which model is loaded, and the policy for loading one: the memory check (engine/fit.py, the one
place that decides "will it fit") run off the GUI thread, asking the user when it will not fit,
stages and cancel while it loads, and keeping the loaded model when a folder is refused.
A model on a server the user added (`load_remote`) takes the same path without the memory check: the
worker connects to the server before it unloads anything, so a server that does not answer (or does
not serve that model) leaves the loaded model loaded.

Talks to the worker with LoadModel/UnloadModel and reads its LoadProgress/ModelReady/ModelUnloaded/
LoadFailed events; the window shows what `changed`, `progress`, `notice` and `confirm_needed` say.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal

from app.background import Background
from app.messages import Event, LoadFailed, LoadModel, LoadProgress, ModelReady, ModelUnloaded, UnloadModel
from app.remote.target import RemoteTarget, parse_remote_model_path
from app.settings import SettingsStore
from engine.fit import MemoryShortfall, Verdict, assess_folder, check_before_load
from engine.types import ModelInfo

log = logging.getLogger(__name__)

RELOAD_KEYS = ("device", "context_length", "cpu_threads", "experts_on_cpu")
"""Settings the loaded model only picks up when it is loaded again."""


class LoadWorker(Protocol):
    def submit(self, request: Any) -> None: ...

    def cancel_load(self) -> None: ...


@dataclass(frozen=True)
class LoadState:
    """A load in progress: the folder (or a remote model's pseudo path), its stage and how far it is."""

    path: Path
    stage: str = "Starting"
    fraction: float = 0.0
    cancelling: bool = False
    name: str = ""                   # what the user calls it, when not the folder's name

    @property
    def label(self) -> str:
        return self.name or self.path.name


class ModelController(QObject):
    changed = Signal()                       # model or load state changed
    progress = Signal(float, str)            # fraction, stage of the load in progress
    notice = Signal(str, str)                # text, kind: "user" | "bug" | "info" (shown until cleared)
    notice_cleared = Signal(str)             # a notice's condition is gone ("load": load errors)
    confirm_needed = Signal(object, object)  # MemoryShortfall, Path: ask, then load_now(path) or not

    def __init__(self, settings: SettingsStore, worker: LoadWorker, manager: Any = None,
                 *, background: Background | None = None,
                 remote_targets: Callable[[Path], RemoteTarget | None] | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.worker = worker
        self.manager = manager
        # A remote model's pseudo path -> its target, if its server is still in the list (Reload).
        self.remote_targets = remote_targets or _registered_target
        self.background = background or Background(self)
        self._ids = itertools.count(1_000_000)   # apart from the chat's request ids
        self._request_id: int | None = None
        self.model: ModelInfo | None = None
        self.loading: LoadState | None = None
        self.checking: Path | None = None        # a memory check runs for this folder
        self.ram: Callable[[], tuple[int, int]] | None = None   # tests inject (available, total)

    # ------------------------------------------------------------------ the policy

    def memory_shortfall(self, model_dir: Path) -> MemoryShortfall | None:
        """Would `model_dir` at the configured context overflow the free RAM? (None: fine or unknown).
        Reads config.json and may wait for the GPU probe: call it off the GUI thread."""
        s = self.settings.settings
        gpu = False
        if s.device == "auto":
            try:
                gpu = self.manager.system.best_gpu is not None if self.manager is not None else False
            except Exception as error:  # noqa: BLE001 - probing is best effort
                log.info("GPU probe failed: %s", error)
        loaded = self.model
        freed = loaded.memory_needed_bytes if loaded is not None and loaded.device in ("cpu", "mps") else 0
        return check_before_load(model_dir, s.context_length, s.device, gpu_present=gpu, freed_bytes=freed,
                                 ram=self.ram)

    def request_load(self, model_dir: Path, *, interactive: bool = True, confirmed: bool = False,
                     asked_if_wont_fit: bool = False) -> None:
        """Load a model unless it will not fit the free RAM and the user says no (or can't be asked).

        The check runs on a pool thread; then either the load starts, or `confirm_needed` asks the
        view (interactive), or a notice says why it was not loaded (not interactive: the autoload).
        `confirmed`: the user already agreed. `asked_if_wont_fit`: the caller (the Models panel) asked
        already if the verdict for this machine is "will not fit", so that case is not asked twice.
        """
        path = Path(model_dir)
        if confirmed:
            self.load_now(path)
            return
        self.checking = path
        self.changed.emit()

        def done(shortfall: MemoryShortfall | None) -> None:
            if self.checking != path:
                return   # another request came meanwhile
            self.checking = None
            if shortfall is None:
                self.load_now(path)
                return
            log.warning("memory check: %s", shortfall.details().splitlines()[0])
            self.changed.emit()
            if interactive:
                self.confirm_needed.emit(shortfall, path)
            else:
                self.notice.emit(f"Did not load {shortfall.model_name} automatically: it needs more memory than "
                                 f"is free. {shortfall.details().splitlines()[0]} Load it from Models (Ctrl+M) to "
                                 "try anyway.", "user")

        def failed(error: BaseException) -> None:
            log.info("memory check for %s failed (%s); loading anyway", path, error)
            done(None)

        def check() -> MemoryShortfall | None:
            if asked_if_wont_fit and self.manager is not None:
                verdict = assess_folder(path, self.settings.settings.context_length, self.manager.system)
                if verdict is not None and verdict.verdict == Verdict.WONT_FIT:
                    return None
            return self.memory_shortfall(path)

        self.background.run(check, done, failed)

    def load_now(self, model_dir: Path) -> None:
        """Start loading `model_dir` (no memory check). The folder is checked by the worker before the
        loaded model is unloaded: a folder that is not a model leaves it loaded."""
        self._submit_load(Path(model_dir))

    def load_remote(self, target: RemoteTarget) -> None:
        """Use `target.model` on the server the user added: no weights, so no memory check. Same stages,
        cancel and "the loaded model stays when it fails" as a folder (the worker connects first)."""
        self._submit_load(target.pseudo_path, remote=target, name=f"{target.model} on {target.host}")

    def _submit_load(self, path: Path, *, remote: RemoteTarget | None = None, name: str = "") -> None:
        s = self.settings.settings
        rid = next(self._ids)
        self._request_id = rid
        self.checking = None
        self.loading = LoadState(path, name=name)
        self.worker.submit(LoadModel(rid, path, s.device, s.context_length, s.cpu_threads,
                                     None if s.experts_on_cpu < 0 else s.experts_on_cpu, remote=remote))
        self.notice_cleared.emit("load")
        self.changed.emit()

    def cancel_load(self) -> None:
        if self.loading is not None and not self.loading.cancelling:
            self.loading = LoadState(self.loading.path, "Cancelling…", self.loading.fraction, cancelling=True,
                                     name=self.loading.name)
            self.worker.cancel_load()
            self.progress.emit(self.loading.fraction, self.loading.stage)
            self.changed.emit()

    def unload(self) -> None:
        rid = next(self._ids)
        self._request_id = rid
        self.worker.submit(UnloadModel(rid))

    def reload(self) -> None:
        """Load the loaded model again (a remote one: connect again, with its server's current entry)."""
        if self.model is None:
            return
        if parse_remote_model_path(self.model.path) is None:
            self.load_now(self.model.path)
            return
        target = self.remote_targets(self.model.path)
        if target is None:
            self.notice.emit("That server is no longer in the list. Add it again from Models (Ctrl+M).", "user")
        else:
            self.load_remote(target)

    def needs_reload(self, key: str) -> bool:
        """A remote model does not use the device, context or thread settings of this computer."""
        return key in RELOAD_KEYS and self.model is not None and not self.model.remote_host

    # ------------------------------------------------------------------ worker events

    def on_event(self, event: Event) -> bool:
        """Handle a load event of the request in flight (True if it was a load event at all)."""
        if not isinstance(event, (LoadProgress, ModelReady, ModelUnloaded, LoadFailed)):
            return False
        if event.request_id != self._request_id:
            log.debug("dropped stale %s", type(event).__name__)
            return True
        if isinstance(event, LoadProgress):
            if self.loading is not None and not self.loading.cancelling:
                self.loading = LoadState(self.loading.path, event.stage, event.fraction, name=self.loading.name)
                if event.stage == "Unloading the previous model":
                    self.model = None
                    self.changed.emit()
                self.progress.emit(event.fraction, event.stage)
        elif isinstance(event, ModelReady):
            self.model, self.loading = event.info, None
            self.settings.update(last_model=str(event.info.path))
            self.notice_cleared.emit("load")
            self.changed.emit()
        elif isinstance(event, ModelUnloaded):
            self.model, self.loading = None, None
            self.changed.emit()
        else:
            name = self.loading.label if self.loading is not None else "the model"
            self.loading = None
            if not event.model_kept:
                self.model = None
            self.changed.emit()
            if event.kind == "cancelled":
                self.notice.emit(f"Loading {name} was cancelled.", "info")
            else:
                kept = f" {self.model.name} is still loaded." if event.model_kept and self.model else ""
                message = event.message.rstrip()
                message += "" if message.endswith((".", "!", "?")) else "."
                self.notice.emit(f"Could not load {name}: {message}{kept}", event.kind)
        return True

    def shutdown(self) -> None:
        self.background.close()


def _registered_target(path: Path) -> RemoteTarget | None:
    from app.remote.registry import target_for

    return target_for(path)
