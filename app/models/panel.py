"""The model manager panel (PySide6): catalog with fit verdicts and downloads, local models,
the models folder. All work happens in `ModelManager` (Qt-free); its events arrive from worker
threads and are queued onto the GUI thread through `_Bridge`.

Contract: `ModelManagerPanel(manager, parent=None)`, signals `load_requested(object)` (a Path) and
`unload_requested()`. Extra signals the window may use: `status_message(str)` (status bar),
`download_progress(str, int, int)` (repo id, bytes done, total), `models_dir_changed(object)`
(the new folder, to store in the settings) and `context_length_changed(int)`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFrame, QGroupBox, QHBoxLayout, QLabel, QMessageBox,
                               QProgressBar, QPushButton, QScrollArea, QSizePolicy, QVBoxLayout, QWidget)

from app.models.catalog import CatalogEntry
from app.models.errors import ModelManagerError
from app.models.events import (DownloadProgress, DownloadStateChanged, JobState, ManagerEvent, ModelsChanged,
                               MoveFinished, MoveProgress)
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


@dataclass(frozen=True, slots=True)
class _VerifyTick:
    path: Path
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class _Notice:
    text: str
    error: bool


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
        stopped = state in (JobState.PAUSED, JobState.ERROR)
        ready = local is not None and local.state == ModelState.READY and not running
        needs_repair = local is not None and local.state in (ModelState.CORRUPT, ModelState.UNVERIFIED)
        leftover = local is not None and local.state in (ModelState.INCOMPLETE, ModelState.PAUSED) and not running
        self.download_btn.setVisible(not running and not stopped and not ready and not leftover)
        self.download_btn.setText("Download again to repair" if needs_repair else "Download")
        self.pause_btn.setVisible(running)
        self.resume_btn.setVisible(stopped or (leftover and not needs_repair))
        self.resume_btn.setText("Retry" if state == JobState.ERROR else "Resume")
        self.cancel_btn.setVisible(running or stopped or leftover)
        progress = job.progress if job is not None else None
        show_bar = running or stopped or leftover
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
        elif state == JobState.ERROR:
            text, style = job.message, "color:#b42318;"
        elif state == JobState.PREPARING:
            text = job.message
        elif running and progress is not None:
            text = progress_text(progress.done_bytes, progress.total_bytes, progress.speed_bps, progress.eta_s)
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


class _LocalRow(QFrame):
    """One model on disk: state, size, place, and Load / Unload / Verify / Delete."""

    def __init__(self, panel: "ModelManagerPanel", model: LocalModel, fit: FitAssessment | None,
                 loaded: bool, verifying: bool) -> None:
        super().__init__()
        self.model = model
        self.setObjectName(f"local-{model.name}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        outer = QVBoxLayout(self)
        top = QHBoxLayout()
        name = QLabel(f"<b>{model.name}</b>" + (" <i>(imported)</i>" if model.imported else ""))
        name.setTextFormat(Qt.TextFormat.RichText)
        top.addWidget(name)
        state_text = "Verifying…" if verifying else model.state.label
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
        busy = model.state in (ModelState.DOWNLOADING,) or verifying
        self.load_btn.setVisible(not loaded)
        self.load_btn.setEnabled(model.state == ModelState.READY and not verifying)
        self.unload_btn.setVisible(loaded)
        self.verify_btn.setEnabled(not busy and model.state not in (ModelState.INCOMPLETE, ModelState.PAUSED))
        self.delete_btn.setEnabled(not verifying)
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
        self._verifying: set[Path] = set()
        self._bridge = _Bridge(self)
        self._bridge.event.connect(self._on_event)
        self._listener = self._bridge.event.emit
        manager.subscribe(self._listener)
        self.destroyed.connect(lambda *_: manager.unsubscribe(self._listener))

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
        self.move_btn = QPushButton("Change folder…")
        self.import_btn = QPushButton("Import folder…")
        self.move_btn.setToolTip("Move every model to another folder (copied and checked, then removed here)")
        self.import_btn.setToolTip("List a folder that already holds a gpt-oss model; it is used where it is")
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
            row = _LocalRow(self, model, fit, loaded=self._loaded == model.path,
                            verifying=model.path in self._verifying)
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

    # ---- events from the manager (GUI thread) -------------------------------------------
    def _on_event(self, event: ManagerEvent) -> None:
        if isinstance(event, DownloadProgress):
            card = self.cards.get(event.repo_id)
            p = event.progress
            if card is not None and p.total_bytes:
                card.progress.setValue(int(1000 * p.fraction))
                card.progress.setVisible(True)
                card.status.setText(progress_text(p.done_bytes, p.total_bytes, p.speed_bps, p.eta_s))
                card.status.setVisible(True)
            name = card.entry.title if card is not None else event.repo_id
            self.download_progress.emit(event.repo_id, p.done_bytes, p.total_bytes)
            self.status_message.emit(f"Downloading {name}: "
                                     + progress_text(p.done_bytes, p.total_bytes, p.speed_bps, p.eta_s))
        elif isinstance(event, DownloadStateChanged):
            card = self.cards.get(event.repo_id)
            if card is not None:
                card.error = ""
            self.refresh_catalog()
            if event.message and event.state != JobState.PREPARING:
                name = card.entry.title if card is not None else event.repo_id
                self.status_message.emit(f"{name}: {event.message}")
        elif isinstance(event, ModelsChanged):
            self.refresh()
        elif isinstance(event, _Notice):
            self._show_notice(event.text, error=event.error)
            self.status_message.emit(event.text)
            self.refresh()
        elif isinstance(event, _VerifyTick):
            for row in self.local_rows:
                if getattr(row, "model", None) is not None and row.model.path == event.path:
                    pct = int(100 * event.done / max(1, event.total))
                    row.state_label.setText(f"Verifying… {pct}%")
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
        try:
            self.manager.start_download(entry.repo_id)
        except ModelManagerError as exc:
            card.error = str(exc)
            self.status_message.emit(str(exc))
        self.refresh_catalog()

    def _pause(self, entry: CatalogEntry) -> None:
        threading.Thread(target=self.manager.pause, args=(entry.repo_id,), daemon=True).start()

    def _cancel(self, entry: CatalogEntry) -> None:
        row = next(r for r in self.manager.catalog_rows() if r.entry.repo_id == entry.repo_id)
        done = row.local.size_bytes if row.local is not None else 0
        answer = QMessageBox.question(
            self, "Cancel download",
            f"Cancel the download of {entry.title}?\n\nThe {format_bytes(done)} downloaded so far will be deleted.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return
        threading.Thread(target=self.manager.cancel, args=(entry.repo_id,), daemon=True).start()

    def _load(self, model: LocalModel, fit: FitAssessment | None) -> None:
        if fit is not None and fit.verdict == Verdict.WONT_FIT:
            answer = QMessageBox.question(
                self, "Model may not fit",
                f"{model.name} will probably not fit in this computer's memory.\n\n{fit.explanation}\n\nLoad it anyway?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.manager.last_loaded = model.path
        self.load_requested.emit(model.path)

    def _unload(self) -> None:
        self.unload_requested.emit()

    def _verify(self, model: LocalModel) -> None:
        self._verifying.add(model.path)
        self.refresh_local()

        last = [0.0]

        def tick(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.2 or done == total:
                last[0] = now
                self._bridge.event.emit(_VerifyTick(model.path, done, total))

        def work() -> None:
            try:
                self.manager.verify(model.path, tick)
            except (ModelManagerError, OSError) as exc:
                log.warning("Verify failed: %s", exc)
            finally:
                self._verifying.discard(model.path)
                self._bridge.event.emit(ModelsChanged())

        threading.Thread(target=work, name="verify-model", daemon=True).start()

    def _delete(self, model: LocalModel) -> None:
        loaded = self._loaded == model.path
        if model.imported:
            title = "Remove model from list"
            text = (f"Remove {model.name} from the list?\n\nIts files stay where they are "
                    f"({model.path}); nothing is deleted.")
        else:
            title = "Delete model"
            text = (f"Delete {model.name}?\n\nThis frees {format_bytes(model.size_bytes)}: "
                    f"every file in {model.path} is removed from disk.")
        if loaded:
            text += "\n\nIt is loaded now and will be unloaded first."
        answer = QMessageBox.question(self, title, text,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return
        if loaded:
            self.unload_requested.emit()
            self._loaded = None

        def work() -> None:             # off the GUI thread: a running download is stopped first
            try:
                freed = self.manager.delete(model.path)
                msg = (f"{model.name} removed from the list." if model.imported
                       else f"{model.name} deleted; {format_bytes(freed)} freed.")
                self._bridge.event.emit(_Notice(msg, error=False))
            except (ModelManagerError, OSError) as exc:
                self._bridge.event.emit(_Notice(f"Could not delete {model.name}: {exc}", error=True))

        threading.Thread(target=work, name="delete-model", daemon=True).start()

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
        answer = QMessageBox.question(
            self, "Move models",
            f"Move {format_bytes(used)} of models to {folder}?\n\nEach file is copied and checked before the old "
            "one is removed; until then the models stay usable where they are.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes)
        if answer != QMessageBox.StandardButton.Yes:
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
