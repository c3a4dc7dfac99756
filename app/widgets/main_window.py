"""The main window: conversations | chat, menus with shortcuts, status bar, settings and models."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
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
    QToolBar,
    QVBoxLayout,
)

from app.chat_controller import ChatController, Turn
from app.finish_notes import finish_note
from app.memory_fit import MemoryShortfall, check_ram
from app.messages import ChatFinished
from app.paths import default_models_dir, log_path
from app.settings import SettingsStore
from app.widgets.chat_view import ChatView
from app.widgets.settings_dialog import SettingsDialog
from app.widgets.sidebar import Sidebar
from app.widgets.status_bar import StatusBar
from app.widgets.theme import apply_theme, stylesheet

log = logging.getLogger(__name__)

RELOAD_KEYS = ("device", "context_length", "cpu_threads")
"""Settings the loaded model only picks up when it is loaded again."""
APPEARANCE_KEYS = ("theme", "font_size", "show_reasoning")


def _model_manager_classes() -> tuple[Any, Any] | None:
    """The model manager panel from app.models, if that package is present."""
    try:
        from app.models.manager import ModelManager
        from app.models.panel import ModelManagerPanel
    except ImportError as error:
        log.info("model manager panel not available (%s); using the folder picker", error)
        return None
    return ModelManager, ModelManagerPanel


class _ManagerBridge(QObject):
    """Carries model manager events (sent from download threads) to the GUI thread."""

    event = Signal(object)


class MainWindow(QMainWindow):
    def __init__(self, controller: ChatController, settings: SettingsStore, model_manager: Any = None) -> None:
        super().__init__()
        self.controller = controller
        self.settings = settings
        self.setWindowTitle("Lantern")
        self.resize(1180, 780)
        self._models_dialog: QDialog | None = None
        self._models_panel: Any = None
        self._model_manager: Any = None
        self._manager_bridge = _ManagerBridge(self)
        self._manager_bridge.event.connect(self.on_manager_event)
        self._shut = False

        self.sidebar = Sidebar()
        self.chat = ChatView()
        splitter = QSplitter()
        splitter.addWidget(self.sidebar)
        splitter.addWidget(self.chat)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 920])
        splitter.setChildrenCollapsible(False)
        self.setCentralWidget(splitter)
        self.status = StatusBar()
        self.setStatusBar(self.status)
        self._build_actions()

        c = controller
        c.conversations_changed.connect(self.refresh_sidebar)
        c.thread_changed.connect(lambda: self.refresh_thread())
        c.turn_updated.connect(self.chat.on_turn_updated)
        c.turn_finished.connect(self.on_turn_finished)
        c.model_changed.connect(self.on_model_changed)
        c.load_progress.connect(self.status.on_load_progress)
        c.error.connect(self.on_error)
        self.sidebar.new_requested.connect(self.new_chat)
        self.sidebar.open_requested.connect(self.open_conversation)
        self.sidebar.hit_requested.connect(self.open_search_hit)
        self.sidebar.rename_requested.connect(c.rename)
        self.sidebar.delete_requested.connect(c.delete)
        self.sidebar.search_changed.connect(lambda _: self.refresh_sidebar())
        self.chat.composer.submitted.connect(self.send)
        self.chat.composer.stop_requested.connect(c.stop)
        self.chat.edit_submitted.connect(self.edit_and_resend)
        self.chat.regenerate_requested.connect(lambda mid: c.regenerate(mid))
        self.chat.sibling_requested.connect(c.switch_sibling)
        settings.changed.connect(self.on_setting_changed)
        QGuiApplication.styleHints().colorSchemeChanged.connect(self.on_system_colors_changed)

        self.apply_appearance()
        self.refresh_sidebar()
        self.on_model_changed()
        if model_manager is not None:
            self._attach_manager(model_manager)

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
        c = self.controller
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
        self.reload_action = self._action("&Reload model", self.reload_model, None,
                                          "Load the model again to apply device, context or thread settings")
        self.export_md_action = self._action("Export chat as &Markdown…", lambda: self.export_chat("md"))
        self.export_json_action = self._action("Export chat as &JSON…", lambda: self.export_chat("json"))
        self.focus_action = self._action("Focus message box", self.chat.composer.edit.setFocus, "Ctrl+L")
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)

        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for a in (self.new_action, self.search_action, None, self.export_md_action, self.export_json_action, None,
                  self.settings_action, None, self.quit_action):
            file_menu.addSeparator() if a is None else file_menu.addAction(a)
        chat_menu = bar.addMenu("&Chat")
        for a in (self.stop_action, self.regenerate_action, self.fork_action, self.focus_action):
            chat_menu.addAction(a)
        model_menu = bar.addMenu("&Models")
        for a in (self.models_action, self.open_folder_action, self.reload_action, self.unload_action):
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
        """The store is about to close: stop timers and ignore late refreshes; pause downloads."""
        self._shut = True
        if self._model_manager is not None:
            self._model_manager.unsubscribe(self._manager_bridge.event.emit)
            self._model_manager.close()  # downloads stay queued and resume next time
        self.sidebar._debounce.stop()
        self.chat.stop_timers()

    def refresh_sidebar(self) -> None:
        if self._shut:
            return
        query = self.sidebar.query
        if query:
            try:
                self.sidebar.show_hits(list(self.controller.store.search(query)))
                return
            except Exception as error:  # noqa: BLE001 - a bad FTS query must not break the list
                log.warning("search %r failed: %s", query, error)
        self.sidebar.show_conversations(list(self.controller.store.list_conversations()),
                                        self.controller.conversation_id)
        self._update_title()

    def refresh_thread(self, rebuild: bool = False) -> None:
        if self._shut:
            return
        c = self.controller
        if c.loading is not None:
            empty = f"Loading {c.loading.name}…"
        elif c.model is None:
            empty = ("Welcome to Lantern: private chat with gpt-oss, entirely on this computer.\n\n"
                     "To begin, load a model: Models… (Ctrl+M) downloads one or lists those you have; "
                     "Open model folder… (Ctrl+O) opens one from anywhere.")
        else:
            empty = f"Ask {c.model.name} anything. Everything stays on this computer."
        self.chat.set_thread(c.thread, c.siblings, c.turn, empty, rebuild=rebuild)
        self._update_composer()
        self._update_title()

    def _update_title(self) -> None:
        cid = self.controller.conversation_id
        title = None
        if cid is not None:
            try:
                title = self.controller.store.get_conversation(cid).title
            except Exception:  # noqa: BLE001 - deleted meanwhile
                title = None
        self.setWindowTitle(f"{title} — Lantern" if title else "Lantern")

    def _update_composer(self) -> None:
        c = self.controller
        self.chat.composer.set_state(c.busy, c.composer_block_reason())
        self.chat.set_busy(c.busy)
        self.stop_action.setEnabled(c.busy)
        self.regenerate_action.setEnabled(not c.busy and c.model is not None)
        self.unload_action.setEnabled(c.model is not None)
        self.reload_action.setEnabled(c.model is not None and not c.busy)

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
            self.chat.hide_banner()

    def edit_and_resend(self, message_id: int, text: str) -> None:
        if self.controller.edit_and_resend(message_id, text):
            self.chat.hide_banner()

    def on_turn_finished(self, event: ChatFinished, turn: Turn) -> None:
        self.status.on_usage(event.usage)
        status = {"stop": "done", "length": "done", "tool_call": "done", "cancelled": "stopped"}.get(
            event.reason, "error")
        notes = (finish_note(event.reason, turn.max_tokens, event.usage.completion_tokens), getattr(event, "note", None))
        self.chat.finish_live(status, event.error, turn, note=" ".join(n for n in notes if n) or None)
        self._update_composer()

    def on_model_changed(self) -> None:
        c = self.controller
        if c.loading is not None:
            self.status.on_loading(c.loading.name)
        else:
            self.status.on_model(c.model)
        if self._models_panel is not None:
            self._models_panel.set_loaded(c.model.path if c.model is not None else None)
        if getattr(self, "servers_section", None) is not None:
            self.servers_section.set_current(c.model.path if c.model is not None else None)
        self._update_composer()
        if not c.thread:
            self.refresh_thread()

    def on_error(self, message: str, kind: str) -> None:
        if kind == "bug":
            self.chat.show_banner(f"{message} (details in {log_path()})", seconds=8)
        else:
            self.chat.show_banner(message)
        self.statusBar().showMessage(message, 8000)

    def on_setting_changed(self, key: str) -> None:
        if key in APPEARANCE_KEYS:
            self.apply_appearance()
        elif key in RELOAD_KEYS and self.controller.model is not None:
            self.chat.show_banner("The new setting applies when the model is loaded again "
                                  "(Models → Reload model).", seconds=10)
        elif key == "offline" and self._model_manager is not None:
            self._model_manager.offline = self.settings.settings.offline
            if self.settings.settings.offline:  # running downloads stop (kept queued)
                self.status.on_download_state(None)
            if self._models_panel is not None:
                self._models_panel.refresh_catalog()
        if key == "context_length":
            if self._models_panel is not None:
                self._models_panel.set_context_length(self.settings.settings.context_length)
            elif self._model_manager is not None:
                self._model_manager.context_length = self.settings.settings.context_length

    def on_system_colors_changed(self, *_: object) -> None:
        if self.settings.settings.theme == "system" and not self._shut:
            self.apply_appearance()

    def reload_model(self) -> None:
        if self.controller.model is not None:
            from app.widgets.remote_hooks import reload_remote

            if not reload_remote(self, self.controller.model.path):
                self.request_load(self.controller.model.path)

    # ------------------------------------------------------------------ loading and memory

    def _gpu_present(self) -> bool:
        if self._model_manager is not None:
            return self._model_manager.system.best_gpu is not None
        from app.models.fit import probe_gpus

        return bool(probe_gpus())

    def memory_shortfall(self, model_dir: Path) -> MemoryShortfall | None:
        """Would `model_dir` at the configured context overflow the free RAM? (None: fine or unknown)"""
        s = self.settings.settings
        try:
            gpu = self._gpu_present() if s.device == "auto" else False
        except Exception as error:  # noqa: BLE001 - probing is best effort
            log.info("GPU probe failed: %s", error)
            gpu = False
        loaded = self.controller.model
        freed = loaded.memory_needed_bytes if loaded is not None and loaded.device in ("cpu", "mps") else 0
        return check_ram(model_dir, s.context_length, s.device, gpu_present=gpu, freed_bytes=freed)

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

    def request_load(self, model_dir: Path, *, interactive: bool = True, confirmed: bool = False) -> bool:
        """Load a model unless it will not fit the free RAM and the user says no (or can't be asked).

        `confirmed`: the user already agreed to load it despite a memory warning (the Models panel
        asks on its own). Returns whether loading started.
        """
        shortfall = None if confirmed else self.memory_shortfall(model_dir)
        if shortfall is not None:
            log.warning("memory check: %s", shortfall.details().splitlines()[0])
            if not interactive:
                self.chat.show_banner(f"Did not load {shortfall.model_name} automatically: it needs more memory "
                                      f"than is free. {shortfall.details().splitlines()[0]} "
                                      "Load it from Models (Ctrl+M) to try anyway.", seconds=None)
                return False
            if not self.ask_load_anyway(shortfall):
                self.statusBar().showMessage(f"{shortfall.model_name} not loaded: not enough free memory.", 8000)
                return False
        self.controller.load_model(Path(model_dir))
        return True

    def _panel_asked_already(self, model_dir: Path) -> bool:
        """The Models panel asks before loading a model it rates "will not fit"; don't ask twice."""
        if self._model_manager is None:
            return False
        try:
            from app.models.fit import Verdict, assess
            from engine.config import load_config

            config, _ = load_config(Path(model_dir))
            fit = assess(config.memory_needed_bytes(self._model_manager.context_length), self._model_manager.system)
        except Exception:  # noqa: BLE001
            return False
        return fit.verdict == Verdict.WONT_FIT

    # ------------------------------------------------------------------ model manager and downloads

    def _attach_manager(self, manager: Any) -> None:
        self._model_manager = manager
        manager.subscribe(self._manager_bridge.event.emit)  # from download threads: queued to this thread

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
            self.request_load(Path(folder))

    def _models_dir(self) -> Path:
        return Path(self.settings.settings.models_dir) if self.settings.settings.models_dir else default_models_dir()

    def open_models(self) -> None:
        """The model manager panel (helper "models"), or the folder picker while it is absent."""
        classes = _model_manager_classes()
        if classes is None:
            self.open_model_folder()
            return
        if self._models_dialog is None:
            manager_cls, panel_cls = classes
            s = self.settings.settings
            dialog = QDialog(self)
            dialog.setWindowTitle("Models")
            dialog.setAccessibleName("Models")
            dialog.resize(900, 640)
            layout = QVBoxLayout(dialog)
            if self._model_manager is None:
                self._attach_manager(manager_cls(self._models_dir(), offline=s.offline,
                                                 context_length=s.context_length))
            self._model_manager.models_dir.mkdir(parents=True, exist_ok=True)
            panel: Any = panel_cls(self._model_manager, dialog)
            panel.load_requested.connect(
                lambda path: self.request_load(Path(path), confirmed=self._panel_asked_already(Path(path)))
                and dialog.accept())
            panel.unload_requested.connect(self.controller.unload_model)
            panel.status_message.connect(lambda text: self.statusBar().showMessage(text, 8000))
            panel.models_dir_changed.connect(lambda path: self.settings.update(models_dir=str(path)))
            panel.context_length_changed.connect(lambda n: self.settings.update(context_length=int(n)))
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
        QMessageBox.about(self, "About Lantern",
                          f"Lantern {QApplication.applicationVersion()}\n\nPrivate, offline chat with gpt-oss. "
                          "Your chats and models stay on this computer.\n\n"
                          f"Log file: {log_path()}")

    def export_chat(self, kind: str) -> None:
        cid = self.controller.conversation_id
        if cid is None:
            return
        title = self.controller.store.get_conversation(cid).title or "chat"
        safe = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in title).strip() or "chat"
        path, _ = QFileDialog.getSaveFileName(self, "Export chat", f"{safe}.{kind}")
        if not path:
            return
        try:
            if kind == "md":
                text = self.controller.store.export_markdown(cid)
            else:
                text = json.dumps(self.controller.store.export_json(cid), indent=2, ensure_ascii=False)
            Path(path).write_text(text, encoding="utf-8")
        except (OSError, sqlite3.Error) as error:  # a read-only folder, a full disk: say so, never a silent slot error
            log.warning("export to %s failed: %s", path, error)
            self.on_error(f"Could not export the chat to {path}: {error}", "user")
            return
        self.statusBar().showMessage(f"Exported to {path}", 5000)
