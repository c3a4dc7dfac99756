"""The first-run page: shown instead of an empty chat while Lantern knows no model yet.

It says what Lantern is and that everything stays on this computer, lists the two models with their
download size and the fit verdict for this machine (the model manager's `catalog_rows`, which uses the
one fit function), and offers a Download button for each and "Use a model folder I already have".
A download that the verdict says will not fit asks first. When a download started here finishes,
`load_requested` carries its folder and the window opens the chat on it.

`install_welcome_page(window)` puts the page in front of the main window's chat on a first run (no model
loaded, loading or remembered in settings.last_model, and no chat in the history), so the window's own
code needs only that one call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

log = logging.getLogger(__name__)

INTRO = ("Lantern is a chat app for OpenAI's open-weight models, gpt-oss-20b and gpt-oss-120b. "
         "It runs the model here, on this computer.")
PRIVACY = ("Everything stays on this machine: your chats, your files and the model itself. There is no account "
           "and no server, and Lantern sends nothing anywhere. The one thing it downloads is the model you "
           "pick below, once; after that it works with no network at all.")
VERDICT_COLORS = {"fits": "#2e7d32", "cpu_only": "#b26a00", "wont_fit": "#c62828"}


class _EventBridge(QObject):
    """Carries model manager events (sent from download threads) to the GUI thread."""

    event = Signal(object)


@dataclass
class _Card:
    repo_id: str
    name: str
    title: QLabel
    size: QLabel
    verdict: QLabel
    explanation: QLabel
    button: QPushButton
    progress: QProgressBar
    status: QLabel


def time_left(seconds: float) -> str:
    if seconds < 60:
        return "less than a minute left"
    if seconds < 3600:
        return f"about {seconds / 60:.0f} min left"
    return f"about {seconds / 3600:.1f} h left"


def ask_download_anyway(parent: QWidget, title: str, explanation: str) -> bool:
    """The question before a download the fit verdict says will not fit (default: don't)."""
    box = QMessageBox(QMessageBox.Icon.Warning, "Model too big for this computer",
                      f"{title} will probably not run on this computer.", QMessageBox.StandardButton.NoButton,
                      parent)
    box.setObjectName("wontFitQuestion")
    box.setInformativeText(f"{explanation}\n\nDownload it anyway? It is a large download, and loading it may "
                           "make the computer very slow or fail.")
    anyway = box.addButton("Download anyway", QMessageBox.ButtonRole.AcceptRole)
    cancel = box.addButton("Cancel", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(cancel)
    box.setEscapeButton(cancel)
    box.exec()
    return box.clickedButton() is anyway


class WelcomePage(QWidget):
    load_requested = Signal(object)          # Path: a model folder to load (a finished download)
    open_folder_requested = Signal()         # "Use a model folder I already have"
    skip_requested = Signal()                # go to the (empty) chat anyway
    status_message = Signal(str)

    def __init__(self, manager: Any = None, parent: QWidget | None = None, *,
                 confirm_wont_fit: Callable[[QWidget, str, str], bool] = ask_download_anyway) -> None:
        super().__init__(parent)
        self.setObjectName("welcomePage")
        self.setAccessibleName("Welcome")
        self.manager = manager
        self.confirm_wont_fit = confirm_wont_fit
        self.cards: dict[str, _Card] = {}
        self._started_here: set[str] = set()
        self._bridge = _EventBridge(self)
        self._bridge.event.connect(self.on_manager_event)
        if manager is not None:
            emit = self._bridge.event.emit
            manager.subscribe(emit)
            self.destroyed.connect(lambda *_: manager.unsubscribe(emit))

        from app.widgets.about_dialog import app_icon

        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(72, 72))
        heading = QLabel("Welcome to Lantern")
        heading.setObjectName("welcomeHeading")
        heading.setStyleSheet("font-size: 22pt; font-weight: 600;")
        intro = QLabel(INTRO)
        privacy = QLabel(PRIVACY)
        privacy.setObjectName("welcomePrivacy")
        for label in (intro, privacy):
            label.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        text = QVBoxLayout()
        text.addWidget(heading)
        text.addWidget(intro)
        top.addLayout(text, 1)

        choose = QLabel("<b>Choose a model to download</b>")
        self.cards_box = QVBoxLayout()
        self.cards_box.setSpacing(12)
        self.folder_button = QPushButton("Use a model folder I already have…")
        self.folder_button.setObjectName("useFolderButton")
        self.folder_button.setToolTip("Open a gpt-oss checkpoint folder (Hugging Face or original layout) "
                                      "that is already on this computer")
        self.folder_button.clicked.connect(self.open_folder_requested.emit)
        self.skip_button = QPushButton("Skip for now")
        self.skip_button.setFlat(True)
        self.skip_button.setToolTip("Go to the chat window; models are in Models… (Ctrl+M) at any time")
        self.skip_button.clicked.connect(self.skip_requested.emit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.folder_button)
        buttons.addStretch(1)
        buttons.addWidget(self.skip_button)
        later = QLabel("You can download, remove or switch models later in Models… (Ctrl+M).")
        later.setProperty("muted", True)

        body = QWidget()
        body.setMaximumWidth(760)
        column = QVBoxLayout(body)
        column.setContentsMargins(32, 32, 32, 32)
        column.setSpacing(14)
        column.addLayout(top)
        column.addWidget(privacy)
        column.addSpacing(6)
        column.addWidget(choose)
        column.addLayout(self.cards_box)
        column.addLayout(buttons)
        column.addWidget(later)
        column.addStretch(1)
        holder = QWidget()
        centre = QHBoxLayout(holder)
        centre.addStretch(1)
        centre.addWidget(body, 100)
        centre.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(holder)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        if manager is None:
            missing = QLabel("The model downloader is not available in this build: open a model folder instead.")
            missing.setWordWrap(True)
            self.cards_box.addWidget(missing)
        else:
            self._build_cards()

    # ------------------------------------------------------------------ cards

    def _build_cards(self) -> None:
        from app.models.catalog import CATALOG

        for entry in CATALOG:
            frame = QFrame()
            frame.setObjectName("modelCard")
            frame.setFrameShape(QFrame.Shape.StyledPanel)
            frame.setStyleSheet("QFrame#modelCard { border: 1px solid palette(mid); border-radius: 8px; }")
            grid = QGridLayout(frame)
            grid.setContentsMargins(16, 12, 16, 12)
            title = QLabel(f"<b style='font-size: 13pt'>{entry.title}</b>")
            description = QLabel(entry.description)
            description.setWordWrap(True)
            size = QLabel("")
            verdict = QLabel("Checking this computer…")
            verdict.setObjectName("fitVerdict")
            explanation = QLabel("")
            explanation.setWordWrap(True)
            explanation.setProperty("muted", True)
            button = QPushButton("Download")
            button.setObjectName("downloadButton")
            button.setAccessibleName(f"Download {entry.title}")
            button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
            progress = QProgressBar()
            progress.setRange(0, 1000)
            progress.setVisible(False)
            status = QLabel("")
            status.setWordWrap(True)
            status.setVisible(False)
            grid.addWidget(title, 0, 0)
            grid.addWidget(size, 0, 1, Qt.AlignmentFlag.AlignRight)
            grid.addWidget(description, 1, 0, 1, 2)
            grid.addWidget(verdict, 2, 0, 1, 2)
            grid.addWidget(explanation, 3, 0, 1, 2)
            grid.addWidget(progress, 4, 0, 1, 2)
            grid.addWidget(status, 5, 0, 1, 2)
            grid.addWidget(button, 0, 2, 2, 1, Qt.AlignmentFlag.AlignVCenter)
            grid.setColumnStretch(0, 1)
            card = _Card(entry.repo_id, entry.name, title, size, verdict, explanation, button, progress, status)
            button.clicked.connect(lambda _=False, rid=entry.repo_id: self.on_button(rid))
            self.cards[entry.repo_id] = card
            self.cards_box.addWidget(frame)
        QTimer.singleShot(0, self.refresh)  # the fit verdict may wait for the memory probe: after the window shows

    def rows(self) -> dict[str, Any]:
        return {row.entry.repo_id: row for row in self.manager.catalog_rows()} if self.manager is not None else {}

    def refresh(self) -> None:
        """Sizes, verdicts and each card's button from the manager's catalog rows."""
        if self.manager is None:
            return
        try:
            rows = self.rows()
        except Exception as error:  # noqa: BLE001 - a broken models folder must not break the page
            log.warning("welcome page: catalog unavailable: %s", error)
            return
        from app.models.events import JobState
        from app.models.local import ModelState
        from app.models.units import format_bytes

        for repo_id, card in self.cards.items():
            row = rows.get(repo_id)
            if row is None:
                continue
            approx = "" if row.download_exact else "about "
            card.size.setText(f"Download: {approx}{format_bytes(row.download_bytes)}")
            color = VERDICT_COLORS.get(row.fit.verdict.value, "")
            card.verdict.setText(f"<b style='color: {color}'>{row.fit.verdict.label}</b> on this computer")
            card.explanation.setText(row.fit.explanation)
            job = row.job.state if row.job is not None else None
            if row.local is not None and row.local.state == ModelState.READY and job not in (
                    JobState.PREPARING, JobState.DOWNLOADING):
                card.button.setText("Start chatting")
            elif job in (JobState.PREPARING, JobState.DOWNLOADING):
                card.button.setText("Pause")
            elif job in (JobState.PAUSED, JobState.ERROR) or (
                    row.local is not None and row.local.state in (ModelState.PAUSED, ModelState.INCOMPLETE)):
                card.button.setText("Resume")
            else:
                card.button.setText("Download")

    def on_button(self, repo_id: str) -> None:
        card = self.cards[repo_id]
        action = card.button.text()
        if action == "Start chatting":
            self.load_requested.emit(self.manager.models_dir / card.name)
        elif action == "Pause":
            self.manager.pause(repo_id)
        else:
            self.start_download(repo_id)

    def start_download(self, repo_id: str) -> bool:
        """Start (or resume) a download through the model manager; asks first if it will not fit."""
        from app.models.errors import ModelManagerError
        from app.models.fit import Verdict

        card = self.cards[repo_id]
        row = self.rows().get(repo_id)
        if row is not None and row.fit.verdict == Verdict.WONT_FIT:
            if not self.confirm_wont_fit(self, row.entry.title, row.fit.explanation):
                self.status_message.emit(f"{row.entry.title} not downloaded.")
                return False
        try:
            self.manager.start_download(repo_id)
        except ModelManagerError as error:
            self._show_status(card, str(error), error=True)
            return False
        self._started_here.add(repo_id)
        card.progress.setValue(0)
        card.progress.setVisible(True)
        self._show_status(card, "Starting…")
        card.button.setText("Pause")
        return True

    def _show_status(self, card: _Card, text: str, *, error: bool = False) -> None:
        card.status.setText(text)
        card.status.setStyleSheet(f"color: {VERDICT_COLORS['wont_fit']};" if error else "")
        card.status.setVisible(bool(text))

    def on_manager_event(self, event: object) -> None:
        from app.models.events import DownloadProgress, DownloadStateChanged, JobState
        from app.models.units import format_bytes

        card = self.cards.get(getattr(event, "repo_id", ""))
        if card is None:
            return
        if isinstance(event, DownloadProgress):
            p = event.progress
            card.progress.setVisible(True)
            if p.total_bytes:
                card.progress.setValue(int(1000 * p.done_bytes / p.total_bytes))
            eta = f", {time_left(p.eta_s)}" if p.eta_s else ""
            self._show_status(card, f"{format_bytes(p.done_bytes)} of {format_bytes(p.total_bytes)}{eta}")
        elif isinstance(event, DownloadStateChanged):
            if event.state == JobState.DONE:
                card.progress.setValue(1000)
                self._show_status(card, event.message or "Downloaded.")
                self.refresh()
                if event.repo_id in self._started_here:
                    self._started_here.discard(event.repo_id)
                    self.status_message.emit(f"{card.name} downloaded: opening it…")
                    self.load_requested.emit(self.manager.models_dir / card.name)
            elif event.state == JobState.ERROR:
                self._show_status(card, event.message, error=True)
                self.refresh()
            elif event.state in (JobState.PAUSED, JobState.CANCELLED):
                card.progress.setVisible(event.state == JobState.PAUSED)
                self._show_status(card, event.message)
                self.refresh()
            else:
                self._show_status(card, event.message or "Downloading…")

    def shutdown(self) -> None:
        if self.manager is not None:
            self.manager.unsubscribe(self._bridge.event.emit)


def should_show(controller: Any, settings: Any, dismissed: bool = False) -> bool:
    """The welcome page fronts the window on a first run: no model loaded, loading or remembered, and no
    chat in the history yet (someone with chats sees them, and loads a model from Models)."""
    if dismissed or controller.model is not None or controller.loading is not None or settings.settings.last_model:
        return False
    if controller.conversation_id is not None:
        return False
    try:
        return not controller.store.list_conversations()
    except Exception:  # noqa: BLE001 - an unreadable history: the chat page reports it
        return False


def install_welcome_page(window: Any, manager: Any = None) -> WelcomePage:
    """Put a WelcomePage in front of `window`'s chat while `should_show`; wire it to the window.

    The window provides: `pages` (a QStackedWidget holding `chat_page`), `controller`, `settings`,
    `request_load(path)` and `open_model_folder()`; `manager` is its model manager (None: folder only).
    """
    pages: QStackedWidget = window.pages
    page = WelcomePage(manager, window)
    pages.insertWidget(0, page)
    state = {"dismissed": False}

    def update() -> None:
        show = should_show(window.controller, window.settings, state["dismissed"])
        pages.setCurrentWidget(page if show else window.chat_page)

    def skip() -> None:
        state["dismissed"] = True
        update()

    page.load_requested.connect(lambda path: window.request_load(Path(path)))
    page.open_folder_requested.connect(window.open_model_folder)
    page.skip_requested.connect(skip)
    page.status_message.connect(lambda text: window.statusBar().showMessage(text, 8000))
    for signal in (window.controller.model_changed, window.controller.conversations_changed,
                   window.controller.thread_changed):
        signal.connect(update)
    update()
    return page
