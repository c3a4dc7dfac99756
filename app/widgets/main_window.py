"""The main window, a view: conversations | chat, menus with shortcuts, status bar, settings and models.

It shows what the controllers hold and calls their methods for what the user does; it builds no
model manager, reads no history and decides no policy. The signals between it and the controllers
are connected in one place, app/wiring.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
)

from app.background import Background
from app.chat_controller import ChatController, Turn
from app.finish_notes import finish_note
from app.messages import ChatFinished
from app.model_controller import ModelController
from app.paths import default_models_dir, documents_dir, log_path
from app.settings import SettingsStore
from app.widgets.chat_view import ChatView
from app.widgets.settings_dialog import SettingsDialog
from app.widgets.sidebar import Sidebar
from app.widgets.status_bar import StatusBar
from app.widgets.theme import apply_theme, stylesheet
from engine.fit import MemoryShortfall

log = logging.getLogger(__name__)

APPEARANCE_KEYS = ("theme", "font_size", "show_reasoning")

WELCOME = ("Welcome to Lantern: private chat with gpt-oss, entirely on this computer.\n\n"
           "To begin, load a model: Models… (Ctrl+M) downloads one or lists those you have; "
           "Open model folder… (Ctrl+O) opens one from anywhere.")


class MainWindow(QMainWindow):
    def __init__(self, controller: ChatController, models: ModelController, settings: SettingsStore,
                 model_manager: Any = None) -> None:
        super().__init__()
        self.controller = controller
        self.models = models
        self.settings = settings
        self.model_manager = model_manager       # built and closed by the Application, never here
        self.setWindowTitle("Lantern")
        self.resize(1180, 780)
        self._models_dialog: QDialog | None = None
        self._models_panel: Any = None
        self._shut = False
        self.background = Background(self)      # the sidebar's list and searches are read off the GUI thread
        self._sidebar_generation = 0

        self.sidebar = Sidebar()
        self.chat = ChatView()
        splitter = QSplitter()
        splitter.addWidget(self.sidebar)
        splitter.addWidget(self.chat)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 920])
        splitter.setChildrenCollapsible(False)
        self.chat_page = splitter
        self.pages = QStackedWidget()   # the chat; the welcome page goes in front while no model is known
        self.pages.addWidget(splitter)
        self.setCentralWidget(self.pages)
        self.status = StatusBar()
        self.setStatusBar(self.status)
        self._build_actions()
        self.chat.set_presets(settings.settings.instruction_presets)

    @property
    def _model_manager(self) -> Any:   # the name the tests knew
        return self.model_manager

    # ------------------------------------------------------------------ actions and shortcuts

    def _action(self, text: str, slot: Any, shortcut: QKeySequence | str | None = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setToolTip(f"{tip or text.rstrip('…')} ({QKeySequence(shortcut).toString()})" if shortcut else tip)
        action.triggered.connect(lambda _=False: slot())
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        c, m = self.controller, self.models
        self.new_action = self._action("&New chat", self.new_chat, QKeySequence.StandardKey.New)
        self.search_action = self._action("&Search chats", self.sidebar.focus_search, QKeySequence.StandardKey.Find)
        self.stop_action = self._action("S&top", c.stop, "Esc", "Stop generating")
        self.regenerate_action = self._action("&Regenerate", lambda: c.regenerate(), "Ctrl+R",
                                              "Regenerate the last reply")
        self.fork_action = self._action("&Fork to new chat", c.fork, "Ctrl+Shift+F", "Copy this branch to a new chat")
        self.settings_action = self._action("Se&ttings…", self.open_settings, "Ctrl+,")
        self.models_action = self._action("&Models…", self.open_models, "Ctrl+M", "Manage and load models")
        self.open_folder_action = self._action("&Open model folder…", self.open_model_folder, "Ctrl+O")
        self.unload_action = self._action("&Unload model", c.unload_model)
        self.reload_action = self._action("&Reload model", m.reload, None,
                                          "Load the model again to apply device, context or thread settings")
        self.cancel_load_action = self._action("&Cancel loading", m.cancel_load, None, "Stop loading the model")
        self.export_md_action = self._action("Export chat as &Markdown…", lambda: self.export_chat("md"))
        self.export_json_action = self._action("Export chat as &JSON…", lambda: self.export_chat("json"))
        self.import_action = self._action("&Import chat from JSON…", self.import_chat, "Ctrl+Shift+O",
                                          "Open a chat exported as JSON (by Lantern) as a new chat")
        self.focus_action = self._action("Focus message box", self.chat.composer.edit.setFocus, "Ctrl+L")
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)

        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for a in (self.new_action, self.search_action, None, self.import_action, self.export_md_action,
                  self.export_json_action, None, self.settings_action, None, self.quit_action):
            file_menu.addSeparator() if a is None else file_menu.addAction(a)
        chat_menu = bar.addMenu("&Chat")
        for a in (self.stop_action, self.regenerate_action, self.fork_action, self.focus_action):
            chat_menu.addAction(a)
        model_menu = bar.addMenu("&Models")
        for a in (self.models_action, self.open_folder_action, self.reload_action, self.unload_action,
                  self.cancel_load_action):
            model_menu.addAction(a)
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self._action("&Keyboard shortcuts", self.show_shortcuts, "F1"))
        help_menu.addAction(self._action("&About Lantern", self.show_about))

        tools = QToolBar("Main")
        tools.setObjectName("mainToolbar")
        tools.setMovable(False)
        tools.setAccessibleName("Main toolbar")
        for a in (self.new_action, self.models_action, self.settings_action):
            tools.addAction(a)
        self.addToolBar(tools)

    # ------------------------------------------------------------------ refreshers

    def shutdown(self) -> None:
        """The store is about to close: stop timers and ignore late refreshes."""
        self._shut = True
        self.background.close()
        self.sidebar._debounce.stop()
        self.chat.stop_timers()

    @property
    def sidebar_pending(self) -> bool:
        """A list or search for the sidebar is being read (tests wait for it)."""
        return self.background.pending > 0

    def refresh_sidebar(self) -> None:
        """Read the chats (or the search's hits) on a pool thread, then show the newest answer only."""
        if self._shut:
            return
        self._sidebar_generation += 1
        generation, query, c = self._sidebar_generation, self.sidebar.query, self.controller

        def fetch() -> tuple[str, list[Any]]:
            if query:
                try:
                    return "hits", c.search(query)
                except Exception as error:  # noqa: BLE001 - a bad FTS query must not break the list
                    log.warning("search %r failed: %s", query, error)
            return "list", c.list_conversations()

        def show(result: tuple[str, list[Any]]) -> None:
            if generation != self._sidebar_generation or self._shut:
                return
            kind, items = result
            if kind == "hits":
                self.sidebar.show_hits(items)
            else:
                self.sidebar.show_conversations(items, c.conversation_id)
            self._update_title()

        self.background.run(fetch, show, lambda error: log.warning("could not list the chats: %s", error))
        self._update_title()

    def empty_text(self) -> str:
        c = self.controller
        if c.loading_label is not None:
            return f"Loading {c.loading_label}…"
        if c.model is None:
            return WELCOME
        if c.model.remote_host:
            return f"Ask {c.model.name} anything. It runs on {c.model.remote_host}: your messages are sent there."
        return f"Ask {c.model.name} anything. Everything stays on this computer."

    def refresh_thread(self, rebuild: bool = False) -> None:
        if self._shut:
            return
        c = self.controller
        self.chat.set_thread(c.thread, c.siblings, c.turn, self.empty_text(), rebuild=rebuild)
        self._update_composer()
        self._update_title()
        if c.turn is None:
            used = c.context_used()
            self.status.on_context(*used) if used else self.status.on_context(0, 0)

    def _update_title(self) -> None:
        title = self.controller.conversation_title()
        self.setWindowTitle(f"{title} — Lantern" if title else "Lantern")

    def _update_composer(self) -> None:
        c, m = self.controller, self.models
        self.chat.composer.set_state(c.busy, c.composer_block_reason())
        self.chat.set_busy(c.busy)
        self.stop_action.setEnabled(c.busy)
        self.regenerate_action.setEnabled(not c.busy and c.model is not None)
        self.unload_action.setEnabled(c.model is not None)
        self.reload_action.setEnabled(c.model is not None and not c.busy)
        self.cancel_load_action.setEnabled(m.loading is not None and not m.loading.cancelling)

    def on_chat_settings_changed(self) -> None:
        c = self.controller
        self.chat.composer.set_chat_settings(c.effective_effort, c.chat_settings.reasoning_effort is not None,
                                             c.effective_instructions, c.chat_settings.instructions is not None)

    def apply_appearance(self) -> None:
        s = self.settings.settings
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        palette = apply_theme(app, s.theme)
        self.setStyleSheet(stylesheet(palette, s.font_size))
        self.chat.set_appearance(palette, s.show_reasoning)
        self.refresh_thread(rebuild=True)

    # ------------------------------------------------------------------ slots

    def new_chat(self) -> None:
        self.controller.new_chat()
        self.sidebar.list.clearSelection()
        self.chat.composer.edit.setFocus()
        self._update_title()

    def open_conversation(self, conversation_id: int) -> None:
        self.controller.open_conversation(conversation_id)

    def open_search_hit(self, conversation_id: int, message_id: int) -> None:
        self.controller.open_message(conversation_id, message_id)
        self.chat.scroll_to_message(message_id)

    def send(self, text: str) -> None:
        if self.controller.send(text):
            self.chat.composer.clear()
            self.chat.clear_banner("history")

    def edit_and_resend(self, message_id: int, text: str) -> None:
        if self.controller.edit_and_resend(message_id, text):
            self.chat.clear_banner("history")

    def on_turn_updated(self, turn: Turn) -> None:
        self.chat.on_turn_updated(turn)
        if turn.stats is not None:
            self.status.on_live(turn.stats, turn.max_context)

    def on_turn_finished(self, event: ChatFinished, turn: Turn) -> None:
        self.status.on_usage(event.usage)
        status = {"stop": "done", "length": "done", "tool_call": "done", "cancelled": "stopped"}.get(
            event.reason, "error")
        notes = (finish_note(event.reason, turn.max_tokens, event.usage.completion_tokens), getattr(event, "note", None))
        self.chat.finish_live(status, event.error, turn, note=" ".join(n for n in notes if n) or None,
                              bug=event.is_bug)
        if event.reason != "error":
            self.chat.clear_banner("chat")
        self._update_composer()

    def on_model_changed(self) -> None:
        c, m = self.controller, self.models
        if m.loading is not None:
            self.status.on_loading(m.loading.label)
            self.chat.show_loading(m.loading.label, m.loading.stage, m.loading.fraction, m.loading.cancelling)
        else:
            self.status.on_model(c.model)
            self.chat.hide_loading()
            used = c.context_used() if c.turn is None else None
            if used:
                self.status.on_context(*used)
        if self._models_panel is not None:
            self._models_panel.set_loaded(c.model.path if c.model is not None else None)
        if getattr(self, "servers_section", None) is not None:
            self.servers_section.set_current(c.model.path if c.model is not None else None)
        self._update_composer()
        if not c.thread:
            self.refresh_thread()

    def on_load_progress(self, fraction: float, stage: str) -> None:
        self.status.on_load_progress(fraction, stage)
        m = self.models
        if m.loading is not None:
            self.chat.show_loading(m.loading.label, stage, fraction, m.loading.cancelling)

    def on_error(self, message: str, kind: str) -> None:
        """A failure of a reply or a history write: a bug says so and where its details are."""
        if kind == "bug":
            self.chat.show_banner(f"Something went wrong inside Lantern (a bug, not something you did): {message}. "
                                  f"Details are in {log_path()}.", tag="chat", kind="bug")
        else:
            self.chat.show_banner(message, tag="history" if "history" in message else "chat")
        self.statusBar().showMessage(message, 8000)

    def show_notice(self, text: str, kind: str) -> None:
        """A notice from the model controller (a load refused, cancelled, not started)."""
        if kind == "bug":
            text = f"{text} (a bug in Lantern; details in {log_path()})"
        self.chat.show_banner(text, tag="load", kind=kind, seconds=8 if kind == "info" else None)

    def clear_notice(self, tag: str) -> None:
        self.chat.clear_banner(tag)

    def on_setting_changed(self, key: str) -> None:
        if key in APPEARANCE_KEYS:
            self.apply_appearance()
        elif self.models.needs_reload(key):
            self.chat.show_banner("The new setting applies when the model is loaded again "
                                  "(Models → Reload model).", seconds=10, tag="setting", kind="info")
        elif key == "offline" and self.settings.settings.offline:
            self.status.on_download_state(None)   # running downloads stop (kept queued)
            if self._models_panel is not None:
                self._models_panel.refresh_catalog()
        if key == "context_length" and self._models_panel is not None:
            self._models_panel.set_context_length(self.settings.settings.context_length)
        if key in ("reasoning_effort", "instructions"):
            self.on_chat_settings_changed()
        if key == "instruction_presets":
            self.chat.set_presets(self.settings.settings.instruction_presets)

    def on_system_colors_changed(self, *_: object) -> None:
        if self.settings.settings.theme == "system" and not self._shut:
            self.apply_appearance()

    # ------------------------------------------------------------------ loading and memory

    def ask_load_anyway(self, shortfall: MemoryShortfall) -> bool:
        """Ask whether to load a model that needs more than the free RAM (default: don't)."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Not enough free memory", shortfall.summary(),
                          QMessageBox.StandardButton.NoButton, self)
        box.setInformativeText(shortfall.details())
        box.setObjectName("memoryWarning")
        box.setStyleSheet("QLabel#qt_msgbox_label, QLabel#qt_msgbox_informativelabel { min-width: 440px; }")
        anyway = box.addButton("Load anyway", QMessageBox.ButtonRole.AcceptRole)
        cancel = box.addButton("Don't load", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(cancel)
        box.setEscapeButton(cancel)
        box.exec()
        return box.clickedButton() is anyway

    def confirm_load(self, shortfall: MemoryShortfall, path: Path) -> None:
        """The model controller found that `path` will not fit: ask, then load or say it was not."""
        if self.ask_load_anyway(shortfall):
            self.models.load_now(path)
        else:
            self.statusBar().showMessage(f"{shortfall.model_name} not loaded: not enough free memory.", 8000)

    def request_load(self, model_dir: Path, *, interactive: bool = True, confirmed: bool = False) -> None:
        self.models.request_load(Path(model_dir), interactive=interactive, confirmed=confirmed)

    # ------------------------------------------------------------------ model manager and downloads

    def on_manager_event(self, event: object) -> None:
        """Download progress and state in the status bar (whether or not the Models window is open)."""
        if self._shut:
            return
        from app.models.catalog import entry_for
        from app.models.events import DownloadProgress, DownloadStateChanged, JobState

        if isinstance(event, DownloadProgress):
            entry = entry_for(event.repo_id)
            p = event.progress
            self.status.on_download_progress(entry.title if entry else event.repo_id, p.done_bytes, p.total_bytes,
                                             p.speed_bps, p.eta_s)
        elif isinstance(event, DownloadStateChanged):
            entry = entry_for(event.repo_id)
            name = entry.title if entry else event.repo_id
            if event.state in (JobState.DONE, JobState.CANCELLED, JobState.PAUSED, JobState.ERROR):
                self.status.on_download_state(None)
                if event.state == JobState.DONE:
                    self.statusBar().showMessage(f"{name} downloaded. Load it from Models (Ctrl+M).", 10000)
                elif event.state == JobState.ERROR:
                    self.statusBar().showMessage(f"Download of {name} failed: {event.message}", 10000)
            else:
                self.status.on_download_state(name, event.message)

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings.settings, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.settings.replace(dialog.result_settings())

    def open_model_folder(self) -> None:
        start = self.settings.settings.last_model or str(self._models_dir())
        folder = QFileDialog.getExistingDirectory(self, "Open a gpt-oss model folder", start)
        if folder:
            self.models.request_load(Path(folder))

    def _models_dir(self) -> Path:
        return Path(self.settings.settings.models_dir) if self.settings.settings.models_dir else default_models_dir()

    def open_models(self) -> None:
        """The model manager panel; the folder picker when the models folder could not be opened."""
        manager = self.model_manager
        if manager is None:
            self.chat.show_banner(f"The models folder {self._models_dir()} cannot be used (see {log_path()}); "
                                  "open a model folder instead.", tag="models", kind="user", seconds=10)
            self.open_model_folder()
            return
        if self._models_dialog is None:
            from app.widgets.models_panel import ModelManagerPanel

            dialog = QDialog(self)
            dialog.setWindowTitle("Models")
            dialog.setAccessibleName("Models")
            dialog.resize(900, 640)
            layout = QVBoxLayout(dialog)
            try:
                manager.models_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                log.warning("cannot create the models folder: %s", error)
            panel: Any = ModelManagerPanel(manager, dialog)
            from app.wiring import connect_models_panel

            connect_models_panel(self, panel, dialog)
            if self.controller.model is not None:
                panel.set_loaded(self.controller.model.path)
            folder = QPushButton("Open model folder…")
            folder.setToolTip("Load a gpt-oss checkpoint from any folder")
            folder.clicked.connect(lambda: (dialog.accept(), self.open_model_folder()))
            close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
            close.rejected.connect(dialog.reject)
            row = QHBoxLayout()
            row.addWidget(folder)
            row.addStretch(1)
            row.addWidget(close)
            layout.addWidget(panel, 1)
            from app.widgets.remote_hooks import add_servers_section

            add_servers_section(self, dialog, layout)   # "Add a server…" and the models servers offer
            layout.addLayout(row)
            self._models_panel = panel
            self._models_dialog = dialog
        self._models_dialog.show()
        self._models_dialog.raise_()

    def shortcut_lines(self) -> list[str]:
        """One "keys — what" line per action that has a shortcut (also the Help dialog's text)."""
        lines = []
        for action in self.actions():
            keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if keys:
                lines.append(f"{keys} — {action.text().replace('&', '').rstrip('…')}")
        return lines + ["Enter — send", "Shift+Enter — new line in the message"]

    def show_shortcuts(self) -> None:
        QMessageBox.information(self, "Keyboard shortcuts", "\n".join(self.shortcut_lines()))

    def show_about(self) -> None:
        from app.widgets.about_dialog import AboutDialog  # the license list is read only when asked for

        AboutDialog(self).exec()

    # ------------------------------------------------------------------ export and import

    def export_chat(self, kind: str) -> None:
        if self.controller.conversation_id is None:
            return
        title = self.controller.conversation_title() or "chat"
        safe = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in title).strip() or "chat"
        path, _ = QFileDialog.getSaveFileName(self, "Export chat", str(documents_dir() / f"{safe}.{kind}"))
        if not path:
            return
        try:
            Path(path).write_text(self.controller.export_text(kind), encoding="utf-8")
        except Exception as error:  # noqa: BLE001 - a read-only folder, a full disk: say so, never a silent slot error
            log.warning("export to %s failed: %s", path, error)
            self.on_error(f"Could not export the chat to {path}: {error}", "user")
            return
        self.statusBar().showMessage(f"Exported to {path}", 5000)

    def import_chat(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a chat", str(documents_dir()),
                                              "Lantern chat (*.json);;All files (*)")
        if not path:
            return
        try:
            self.controller.import_chat(Path(path))
        except Exception as error:  # noqa: BLE001 - not JSON, not a Lantern export, unreadable: say which
            log.warning("import of %s failed: %s", path, error)
            self.chat.show_banner(f"Could not import {Path(path).name}: {error}", tag="import", kind="user",
                                  seconds=12)
            return
        self.chat.clear_banner("import")
        self.statusBar().showMessage(f"Imported {Path(path).name}", 5000)
