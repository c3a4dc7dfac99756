"""The model manager panel (PySide6): catalog with fit verdicts and downloads, local models,
the models folder. All work happens in `app.models.ModelManager` (Qt-free): downloads, verify and
delete run on its download queue's worker threads, never here; its events arrive from those
threads and are queued onto the GUI thread through `_Bridge`. The models folder is watched, so a
model folder copied in by hand appears without a restart (and Refresh re-reads it on demand).

Every question asks with buttons that say what they do, and the default is the answer that loses
nothing: "Keep downloading" rather than "Cancel download", "Don't download" for a model the fit
verdict says will not fit.

Contract: `ModelManagerPanel(manager, parent=None)`, signals `load_requested(object)` (a Path) and
`unload_requested()`. Extra signals the window may use: `status_message(str)` (status bar),
`download_progress(str, int, int)` (repo id, bytes done, total), `models_dir_changed(object)`
(the new folder, to store in the settings) and `context_length_changed(int)`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFrame, QGroupBox, QHBoxLayout, QLabel, QMessageBox,
                               QProgressBar, QPushButton, QScrollArea, QSizePolicy, QVBoxLayout, QWidget)

from app.models.catalog import CatalogEntry
from app.models.errors import ModelManagerError
from app.models.events import (DownloadProgress, DownloadStateChanged, JobState, ManagerEvent, ModelsChanged,
                               MoveFinished, MoveProgress, TaskFinished, TaskProgress)
from app.models.fit import FitAssessment, Verdict, assess
from app.models.local import LocalModel, ModelState
from app.models.manager import CatalogRow, ModelManager
from app.models.panel_text import progress_text
from app.models.units import format_bytes

log = logging.getLogger(__name__)

CONTEXT_CHOICES = (4096, 8192, 16384, 32768, 65536, 131072)
_VERDICT_STYLE = {
    Verdict.FITS: "background:#1e7b34;color:white;",
    Verdict.CPU_ONLY: "background:#9a6700;color:white;",
    Verdict.WONT_FIT: "background:#b42318;color:white;",
}
_STATE_STYLE = {
    ModelState.READY: "color:#1e7b34;",
    ModelState.CORRUPT: "color:#b42318;",
    ModelState.INVALID: "color:#b42318;",
    ModelState.UNVERIFIED: "color:#9a6700;",
}


WATCH_SETTLE_MS = 300
"""After the models folder changes, wait this long for more changes before re-reading it."""


def confirm(parent: QWidget, title: str, text: str, *, accept: str, reject: str, details: str = "",
            default_accept: bool = False, destructive: bool = False) -> bool:
    """Ask with two buttons named for what they do; Esc and closing the box mean `reject`.
    The default (Enter) is `reject` unless `default_accept`: the answer that loses nothing."""
    box = QMessageBox(QMessageBox.Icon.Warning if destructive else QMessageBox.Icon.Question, title, text,
                      QMessageBox.StandardButton.NoButton, parent)
    if details:
        box.setInformativeText(details)
    yes = box.addButton(accept, QMessageBox.ButtonRole.DestructiveRole if destructive
                        else QMessageBox.ButtonRole.AcceptRole)
    no = box.addButton(reject, QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(yes if default_accept else no)
    box.setEscapeButton(no)
    box.exec()
    return box.clickedButton() is yes


def _muted(label: QLabel) -> None:
    """Secondary text in the theme's own muted colour (readable in light and dark themes)."""
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)


class _Bridge(QObject):
    event = Signal(object)


def _badge(fit: FitAssessment | None = None) -> QLabel:
    label = QLabel()
    label.setObjectName("fitBadge")
    label.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
    if fit is not None:
        _style_badge(label, fit)
    return label


def _style_badge(label: QLabel, fit: FitAssessment) -> None:
    label.setText(fit.verdict.label)
    label.setStyleSheet("QLabel#fitBadge{" + _VERDICT_STYLE[fit.verdict]
                        + "border-radius:8px;padding:2px 8px;font-weight:600;}")
    label.setToolTip(fit.explanation)
    label.setAccessibleName(f"Fit: {fit.verdict.label}. {fit.explanation}")


class _CatalogCard(QFrame):
    """One downloadable model: sizes, fit verdict, download controls and progress."""

    def __init__(self, panel: "ModelManagerPanel", entry: CatalogEntry) -> None:
        super().__init__()
        self.panel = panel
        self.entry = entry
        self.setObjectName(f"card-{entry.name}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        title = QLabel(f"<b>{entry.title}</b>")
        title.setTextFormat(Qt.TextFormat.RichText)
        top.addWidget(title)
        top.addStretch(1)
        self.badge = _badge()
        top.addWidget(self.badge)
        layout.addLayout(top)
        desc = QLabel(entry.description)
        desc.setWordWrap(True)
        layout.addWidget(desc)
        self.sizes = QLabel()
        self.sizes.setObjectName("sizes")
        self.sizes.setWordWrap(True)
        layout.addWidget(self.sizes)
        self.fit_note = QLabel()
        self.fit_note.setObjectName("fitNote")
        self.fit_note.setWordWrap(True)
        _muted(self.fit_note)
        layout.addWidget(self.fit_note)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setAccessibleName(f"{entry.title} download progress")
        layout.addWidget(self.progress)
        self.status = QLabel()
        self.status.setObjectName("status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        buttons = QHBoxLayout()
        self.download_btn = QPushButton("Download")
        self.pause_btn = QPushButton("Pause")
        self.resume_btn = QPushButton("Resume")
        self.cancel_btn = QPushButton("Cancel download")
        for b in (self.download_btn, self.pause_btn, self.resume_btn, self.cancel_btn):
            b.setAccessibleName(f"{b.text()} {entry.title}")
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.download_btn.clicked.connect(lambda: panel._start(entry))
        self.resume_btn.clicked.connect(lambda: panel._start(entry))
        self.pause_btn.clicked.connect(lambda: panel._pause(entry))
        self.cancel_btn.clicked.connect(lambda: panel._cancel(entry))
        self.fit: FitAssessment | None = None
        self.error = ""

    def update_row(self, row: CatalogRow) -> None:
        self.fit = row.fit
        _style_badge(self.badge, row.fit)
        approx = "" if row.download_exact else "about "
        ctx = self.panel.manager.context_length
        self.sizes.setText(f"Download {approx}{format_bytes(row.download_bytes)} · needs "
                           f"{format_bytes(row.fit.needed_bytes)} of memory at {ctx:,} tokens of context")
        self.sizes.setToolTip(row.fit.explanation)
        self.fit_note.setText(row.fit.explanation)
        self.fit_note.setVisible(row.fit.verdict != Verdict.FITS)
        job = row.job
        local = row.local
        state = job.state if job is not None else None
        running = state in (JobState.PREPARING, JobState.DOWNLOADING)
        retrying = state == JobState.RETRYING
        stopped = state in (JobState.PAUSED, JobState.ERROR)
        ready = local is not None and local.state == ModelState.READY and not (running or retrying)
        needs_repair = local is not None and local.state in (ModelState.CORRUPT, ModelState.UNVERIFIED)
        leftover = (local is not None and local.state in (ModelState.INCOMPLETE, ModelState.PAUSED)
                    and not (running or retrying))
        self.download_btn.setVisible(not running and not retrying and not stopped and not ready and not leftover)
        self.download_btn.setText("Download again to repair" if needs_repair else "Download")
        self.pause_btn.setVisible(running or retrying)
        self.resume_btn.setVisible(retrying or stopped or (leftover and not needs_repair))
        self.resume_btn.setText("Retry" if state in (JobState.ERROR, JobState.RETRYING) else "Resume")
        self.resume_btn.setToolTip("Try again now" if retrying else "")
        self.cancel_btn.setVisible(running or retrying or stopped or leftover)
        progress = job.progress if job is not None else None
        show_bar = running or retrying or stopped or leftover
        self.progress.setVisible(show_bar)
        if progress is not None and progress.total_bytes:
            self.progress.setValue(int(1000 * progress.fraction))
        elif local is not None and show_bar:
            self.progress.setValue(min(1000, int(1000 * local.size_bytes / max(1, row.download_bytes))))
        else:
            self.progress.setValue(0)
        style = ""
        if self.error:
            text, style = self.error, "color:#b42318;"
        elif job is not None and retrying:
            wait = f"{job.retry_in_s:g} s" if job.retry_in_s is not None else "a moment"
            text = (f"{job.reason or job.message} Trying again in {wait}, or press {self.resume_btn.text()} "
                    "to try now.")
            style = "color:#9a6700;"
        elif job is not None and state == JobState.ERROR:
            text, style = job.message, "color:#b42318;"
        elif job is not None and state == JobState.PREPARING:
            text = job.message
        elif job is not None and running and progress is not None:
            text = self.progress_text(job.message, progress)
        elif state == JobState.PAUSED or (leftover and local is not None):
            done = progress.done_bytes if progress is not None else (local.size_bytes if local else 0)
            text = f"Paused at {format_bytes(done)} of {format_bytes(row.download_bytes)}."
        elif ready:
            text, style = "Downloaded and verified: see below to load it.", "color:#1e7b34;"
        elif needs_repair and local is not None:
            text, style = local.message, "color:#b42318;"
        else:
            text = ""
        self.status.setText(text)
        self.status.setStyleSheet(style)
        self.status.setVisible(bool(text))

    @staticmethod
    def progress_text(notice: str, p) -> str:  # type: ignore[no-untyped-def]
        """The progress line, with the download's notice (a revision change, a retry) under it."""
        line = progress_text(p.done_bytes, p.total_bytes, p.speed_bps, p.eta_s)
        return f"{line}\n{notice}" if notice else line


class _LocalRow(QFrame):
    """One model on disk: state, size, place, and Load / Unload / Verify / Delete."""

    def __init__(self, panel: "ModelManagerPanel", model: LocalModel, fit: FitAssessment | None,
                 loaded: bool, busy: str | None, result: tuple[bool, str] | None) -> None:
        super().__init__()
        self.model = model
        self.setObjectName(f"local-{model.name}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        outer = QVBoxLayout(self)
        top = QHBoxLayout()
        name = QLabel(f"<b>{model.name}</b>" + (" <i>(imported)</i>" if model.imported else ""))
        name.setTextFormat(Qt.TextFormat.RichText)
        top.addWidget(name)
        state_text = {"verify": "Verifying…", "delete": "Deleting…"}.get(busy or "", model.state.label)
        if loaded:
            state_text += " · loaded"
        self.state_label = QLabel(state_text)
        self.state_label.setObjectName("state")
        self.state_label.setStyleSheet(_STATE_STYLE.get(model.state, "") + "font-weight:600;")
        top.addWidget(self.state_label)
        top.addStretch(1)
        if fit is not None:
            top.addWidget(_badge(fit))
        top.addWidget(QLabel(format_bytes(model.size_bytes)))
        outer.addLayout(top)
        where = QLabel(str(model.path))
        _muted(where)
        where.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        where.setToolTip(str(model.path))
        where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(where)
        if model.message:
            msg = QLabel(model.message)
            msg.setObjectName("message")
            msg.setWordWrap(True)
            outer.addWidget(msg)
        if result is not None:                  # the last Verify's result, until the folder changes
            ok, text = result
            self.result_label = QLabel(text)
            self.result_label.setObjectName("verifyResult")
            self.result_label.setWordWrap(True)
            self.result_label.setStyleSheet("color:#1e7b34;" if ok else "color:#b42318;")
            outer.addWidget(self.result_label)
        buttons = QHBoxLayout()
        self.load_btn = QPushButton("Load")
        self.unload_btn = QPushButton("Unload")
        self.verify_btn = QPushButton("Verify")
        self.delete_btn = QPushButton("Remove from list" if model.imported else "Delete")
        for b in (self.load_btn, self.unload_btn, self.verify_btn, self.delete_btn):
            b.setAccessibleName(f"{b.text()} {model.name}")
            buttons.addWidget(b)
        buttons.addStretch(1)
        outer.addLayout(buttons)
        working = model.state == ModelState.DOWNLOADING or busy is not None
        self.load_btn.setVisible(not loaded)
        self.load_btn.setEnabled(model.state == ModelState.READY and busy is None)
        self.unload_btn.setVisible(loaded)
        self.verify_btn.setEnabled(not working and model.state not in (ModelState.INCOMPLETE, ModelState.PAUSED))
        self.delete_btn.setEnabled(busy is None)
        self.load_btn.clicked.connect(lambda: panel._load(model, fit))
        self.unload_btn.clicked.connect(panel._unload)
        self.verify_btn.clicked.connect(lambda: panel._verify(model))
        self.delete_btn.clicked.connect(lambda: panel._delete(model))


class ModelManagerPanel(QWidget):
    load_requested = Signal(object)
    unload_requested = Signal()
    status_message = Signal(str)
    download_progress = Signal(str, int, int)
    models_dir_changed = Signal(object)
    context_length_changed = Signal(int)

    def __init__(self, manager: ModelManager, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.manager = manager
        self._loaded: Path | None = None
        self._results: dict[Path, tuple[bool, str]] = {}     # the last Verify result per folder
        self._bridge = _Bridge(self)
        self._bridge.event.connect(self._on_event)
        self._listener = self._bridge.event.emit
        manager.subscribe(self._listener)
        self.destroyed.connect(lambda *_: manager.unsubscribe(self._listener))
        # The models folder and each model folder in it: a folder copied in by hand shows up.
        self._watcher = QFileSystemWatcher(self)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(WATCH_SETTLE_MS)
        self._settle.timeout.connect(self._folder_changed)
        self._watcher.directoryChanged.connect(lambda _path: self._settle.start())

        root = QVBoxLayout(self)
        header = QHBoxLayout()
        title = QLabel("<h2>Models</h2>")
        header.addWidget(title)
        header.addStretch(1)
        header.addWidget(QLabel("Context length:"))
        self.context_combo = QComboBox()
        self.context_combo.setAccessibleName("Context length for the memory estimate")
        for n in CONTEXT_CHOICES:
            self.context_combo.addItem(f"{n:,} tokens", n)
        self._select_context(manager.context_length)
        self.context_combo.currentIndexChanged.connect(self._context_changed)
        header.addWidget(self.context_combo)
        root.addLayout(header)

        self.folder_label = QLabel()
        self.folder_label.setObjectName("folder")
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # A long path must not widen the panel: it is clipped, and whole in the tooltip.
        self.folder_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        root.addWidget(self.folder_label)
        disk_row = QHBoxLayout()
        self.disk_label = QLabel()
        self.disk_label.setObjectName("disk")
        self.disk_label.setWordWrap(True)
        disk_row.addWidget(self.disk_label, 1)
        self.refresh_btn = QPushButton("Refresh")
        self.move_btn = QPushButton("Change folder…")
        self.import_btn = QPushButton("Import folder…")
        self.refresh_btn.setToolTip("Read the models folder again (new folders also show up by themselves)")
        self.move_btn.setToolTip("Move every model to another folder (copied and checked, then removed here)")
        self.import_btn.setToolTip("List a folder that already holds a gpt-oss model; it is used where it is")
        disk_row.addWidget(self.refresh_btn)
        disk_row.addWidget(self.move_btn)
        disk_row.addWidget(self.import_btn)
        root.addLayout(disk_row)
        self.move_bar = QProgressBar()
        self.move_bar.setRange(0, 1000)
        self.move_bar.setVisible(False)
        root.addWidget(self.move_bar)
        self.notice = QLabel()
        self.notice.setObjectName("notice")
        self.notice.setWordWrap(True)
        self.notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice.setVisible(False)
        root.addWidget(self.notice)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(0, 0, 0, 0)
        catalog_box = QGroupBox("Download from Hugging Face")
        catalog_layout = QVBoxLayout(catalog_box)
        self.offline_label = QLabel("Offline mode is on: Lantern opens no network connection. "
                                    "Turn it off in Settings to download.")
        self.offline_label.setObjectName("offline")
        self.offline_label.setWordWrap(True)
        self.offline_label.setStyleSheet("color:#9a6700;")
        catalog_layout.addWidget(self.offline_label)
        self.cards: dict[str, _CatalogCard] = {}
        for row in manager.catalog_rows():
            card = _CatalogCard(self, row.entry)
            self.cards[row.entry.repo_id] = card
            catalog_layout.addWidget(card)
        body_layout.addWidget(catalog_box)
        self.local_box = QGroupBox("On this computer")
        self.local_layout = QVBoxLayout(self.local_box)
        body_layout.addWidget(self.local_box)
        body_layout.addStretch(1)
        scroll.setWidget(body)
        root.addWidget(scroll, 1)
        self.local_rows: list[_LocalRow] = []

        self.refresh_btn.clicked.connect(self._refresh_clicked)
        self.move_btn.clicked.connect(self._change_folder)
        self.import_btn.clicked.connect(self._import)
        self.refresh()
        QTimer.singleShot(0, self._resume_pending)

    # ---- public ------------------------------------------------------------------------
    def set_loaded(self, path: Path | None) -> None:
        """The window tells which model folder is loaded (None: none)."""
        self._loaded = Path(path) if path is not None else None
        self.refresh_local()

    def set_context_length(self, context: int) -> None:
        self._select_context(context)
        self.manager.context_length = context
        self.refresh()

    def refresh(self) -> None:
        self.refresh_catalog()
        self.refresh_local()

    def refresh_catalog(self) -> None:
        self.offline_label.setVisible(self.manager.offline)
        for row in self.manager.catalog_rows():
            card = self.cards[row.entry.repo_id]
            card.update_row(row)
            card.download_btn.setEnabled(not self.manager.offline)
            card.resume_btn.setEnabled(not self.manager.offline)

    def refresh_local(self) -> None:
        for row in self.local_rows:
            self.local_layout.removeWidget(row)
            row.hide()
            row.setParent(None)
            row.deleteLater()
        self.local_rows = []
        models = self.manager.local_models()
        for model in models:
            fit = (assess(model.config.memory_needed_bytes(self.manager.context_length), self.manager.system)
                   if model.config is not None else None)
            row = _LocalRow(self, model, fit, loaded=self._loaded == model.path, busy=self.manager.busy(model.path),
                            result=self._results.get(model.path))
            self.local_rows.append(row)
            self.local_layout.addWidget(row)
        if not models:
            empty = _EmptyNote("No models yet: download one above, or import a folder that holds one.")
            self.local_rows.append(empty)  # type: ignore[arg-type]
            self.local_layout.addWidget(empty)
        self.folder_label.setText(f"Models folder: {self.manager.models_dir}")
        self.folder_label.setToolTip(str(self.manager.models_dir))
        usage = self.manager.disk_usage()
        self.disk_label.setText(f"Models use {format_bytes(usage.models_bytes)} · "
                                f"{format_bytes(usage.free_bytes)} free on this disk")
        self._watch()

    # ---- the models folder on disk ------------------------------------------------------
    def _watch(self) -> None:
        """Watch the models folder and the model folders in it (not their contents' bytes)."""
        root = self.manager.models_dir
        wanted = set()
        if root.is_dir():
            wanted.add(str(root))
            wanted.update(str(p) for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        else:                                   # not made yet: watch for it to appear
            probe = root.parent
            while not probe.is_dir() and probe != probe.parent:
                probe = probe.parent
            wanted.add(str(probe))
        current = set(self._watcher.directories())
        if current - wanted:
            self._watcher.removePaths(sorted(current - wanted))
        if wanted - current:
            self._watcher.addPaths(sorted(wanted - current))

    def _folder_changed(self) -> None:
        """Something in the models folder changed (a copy by hand, a download's files): re-read it."""
        self.refresh()

    def _refresh_clicked(self) -> None:
        self._results.clear()
        self.refresh()
        self._show_notice("")

    # ---- events from the manager (GUI thread) -------------------------------------------
    def _on_event(self, event: ManagerEvent) -> None:
        if isinstance(event, DownloadProgress):
            card = self.cards.get(event.repo_id)
            p = event.progress
            status = self.manager.job_status(event.repo_id)
            if card is not None and p.total_bytes:
                card.progress.setValue(int(1000 * p.fraction))
                card.progress.setVisible(True)
                card.status.setText(card.progress_text(status.message if status is not None else "", p))
                card.status.setStyleSheet("")
                card.status.setVisible(True)
            name = card.entry.title if card is not None else event.repo_id
            self.download_progress.emit(event.repo_id, p.done_bytes, p.total_bytes)
            self.status_message.emit(f"Downloading {name}: "
                                     + progress_text(p.done_bytes, p.total_bytes, p.speed_bps, p.eta_s))
        elif isinstance(event, DownloadStateChanged):
            card = self.cards.get(event.repo_id)
            if card is not None:
                card.error = ""
                self._results.pop(self.manager.models_dir / card.entry.name, None)   # its files change now
            self.refresh_catalog()
            self.refresh_local()                    # the model's row shows the download's state too
            if event.message and event.state != JobState.PREPARING:
                name = card.entry.title if card is not None else event.repo_id
                self.status_message.emit(f"{name}: {event.message}")
        elif isinstance(event, ModelsChanged):
            self.refresh()
        elif isinstance(event, TaskProgress):
            for row in self.local_rows:
                if getattr(row, "model", None) is not None and row.model.path == event.path:
                    pct = int(100 * event.done_bytes / max(1, event.total_bytes))
                    row.state_label.setText(f"Verifying… {pct}%")
        elif isinstance(event, TaskFinished):
            if event.kind == "verify":          # the result stays in the model's row
                self._results[event.path] = (event.ok, event.message)
                self._show_notice("" if event.ok else event.message, error=True)
            else:
                self._results.pop(event.path, None)
                self._show_notice(event.message, error=not event.ok)
            self.status_message.emit(event.message)
            self.refresh()
        elif isinstance(event, MoveProgress):
            self.move_bar.setVisible(True)
            self.move_bar.setValue(int(1000 * event.done_bytes / max(1, event.total_bytes)))
            self._show_notice(f"Moving models: {format_bytes(event.done_bytes)} of "
                              f"{format_bytes(event.total_bytes)} ({event.current_file})")
        elif isinstance(event, MoveFinished):
            self.move_bar.setVisible(False)
            self.move_btn.setEnabled(True)
            self._show_notice(event.message, error=event.new_dir is None)
            self.status_message.emit(event.message)
            if event.new_dir is not None:
                self.models_dir_changed.emit(event.new_dir)
            self.refresh()

    # ---- actions -----------------------------------------------------------------------
    def _show_notice(self, text: str, *, error: bool = False) -> None:
        self.notice.setText(text)
        self.notice.setStyleSheet("color:#b42318;" if error else "")
        self.notice.setVisible(bool(text))

    def _resume_pending(self) -> None:
        try:
            self.manager.resume_pending()
        except ModelManagerError as exc:
            self._show_notice(str(exc), error=True)

    def _start(self, entry: CatalogEntry) -> None:
        card = self.cards[entry.repo_id]
        card.error = ""
        status = self.manager.job_status(entry.repo_id)
        fresh = status is None or status.state in (JobState.DONE, JobState.CANCELLED)
        if fresh and not self.manager.offline and not self._fits_or_confirmed(entry):
            return
        try:
            self.manager.start_download(entry.repo_id)
        except ModelManagerError as exc:
            card.error = str(exc)
            self.status_message.emit(str(exc))
        self.refresh_catalog()

    def _fits_or_confirmed(self, entry: CatalogEntry) -> bool:
        """A model the fit verdict says will not fit: ask before fetching tens of gigabytes."""
        fit = self.manager.fit_for(entry)
        if fit.verdict != Verdict.WONT_FIT:
            return True
        size = next((format_bytes(r.download_bytes) for r in self.manager.catalog_rows()
                     if r.entry.repo_id == entry.repo_id), "")
        return confirm(
            self, "Model will not fit",
            f"{entry.title} will not fit in this computer's memory, so it could not be loaded here.",
            details=f"{fit.explanation}\n\nDownload the {size} anyway (for example to use it on another computer, "
                    "or after adding memory)?",
            accept="Download anyway", reject="Don't download")

    def _pause(self, entry: CatalogEntry) -> None:
        self.manager.pause(entry.repo_id, wait=False)      # the worker reports "Paused" when it has stopped

    def _cancel(self, entry: CatalogEntry) -> None:
        row = next(r for r in self.manager.catalog_rows() if r.entry.repo_id == entry.repo_id)
        done = row.local.size_bytes if row.local is not None else 0
        if not confirm(self, "Cancel download", f"Cancel the download of {entry.title}?",
                       details=f"The {format_bytes(done)} downloaded so far will be deleted. To stop for now and "
                               "go on later, keep downloading and press Pause instead.",
                       accept="Cancel download", reject="Keep downloading", destructive=True):
            return
        try:
            self.manager.cancel(entry.repo_id, wait=False)
        except ModelManagerError as exc:
            self._show_notice(str(exc), error=True)

    def _load(self, model: LocalModel, fit: FitAssessment | None) -> None:
        if fit is not None and fit.verdict == Verdict.WONT_FIT:
            if not confirm(self, "Model may not fit",
                           f"{model.name} will probably not fit in this computer's memory.",
                           details=f"{fit.explanation}\n\nLoading it anyway will probably make the computer very "
                                   "slow, or fail part-way.",
                           accept="Load anyway", reject="Don't load"):
                return
        self.manager.last_loaded = model.path
        self.load_requested.emit(model.path)

    def _unload(self) -> None:
        self.unload_requested.emit()

    def _verify(self, model: LocalModel) -> None:
        self._results.pop(model.path, None)
        try:
            self.manager.start_verify(model.path)
        except ModelManagerError as exc:
            self._show_notice(str(exc), error=True)
            return
        self._show_notice("")
        self.refresh_local()

    def _delete(self, model: LocalModel) -> None:
        loaded = self._loaded == model.path
        if model.imported:
            title, accept, reject = "Remove model from list", "Remove from list", "Keep in list"
            text = f"Remove {model.name} from the list?"
            details = f"Its files stay where they are ({model.path}); nothing is deleted."
        else:
            title, accept, reject = "Delete model", "Delete", "Keep"
            text = f"Delete {model.name}?"
            details = (f"This frees {format_bytes(model.size_bytes)}: every file in {model.path} is removed "
                       "from disk.")
        if loaded:
            details += "\n\nIt is loaded now and will be unloaded first."
        if not confirm(self, title, text, details=details, accept=accept, reject=reject,
                       destructive=not model.imported):
            return
        if loaded:
            self.unload_requested.emit()
            self._loaded = None
        try:
            self.manager.start_delete(model.path)   # on the queue's worker: a running download stops first
        except ModelManagerError as exc:
            self._show_notice(str(exc), error=True)
            return
        self.refresh_local()

    def _import(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import a folder that holds a gpt-oss model")
        if not folder:
            return
        try:
            model = self.manager.import_folder(Path(folder))
        except ModelManagerError as exc:
            QMessageBox.warning(self, "Cannot import this folder", str(exc))
            return
        self._show_notice(f"{model.name} imported; it is used where it is, not copied.")
        self.refresh()

    def _change_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the new models folder", str(self.manager.models_dir))
        if not folder:
            return
        used = self.manager.disk_usage().models_bytes
        if not confirm(self, "Move models", f"Move {format_bytes(used)} of models to {folder}?",
                       details="Each file is copied and checked before the old one is removed; until then the "
                               "models stay usable where they are.",
                       accept="Move models", reject="Don't move", default_accept=True):
            return
        try:
            self.manager.start_move(Path(folder))
        except ModelManagerError as exc:
            QMessageBox.warning(self, "Cannot move the models", str(exc))
            return
        self.move_btn.setEnabled(False)
        self.move_bar.setValue(0)
        self.move_bar.setVisible(True)

    def _select_context(self, context: int) -> None:
        idx = self.context_combo.findData(context)
        if idx < 0:
            self.context_combo.addItem(f"{context:,} tokens", context)
            idx = self.context_combo.count() - 1
        self.context_combo.blockSignals(True)
        self.context_combo.setCurrentIndex(idx)
        self.context_combo.blockSignals(False)

    def _context_changed(self) -> None:
        value = int(self.context_combo.currentData())
        self.manager.context_length = value
        self.context_length_changed.emit(value)
        self.refresh()


class _EmptyNote(QLabel):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.setWordWrap(True)
        _muted(self)
