"""The Models window's “On servers you run” section: the servers the user added, the models each
offers with an “on <host>” badge and a Use button, “Add a server…”, refresh and remove.

Contract: `ServersSection(registry, parent=None)`, signals `use_requested(object)` (a RemoteTarget)
and `status_message(str)`; `set_current(path)` marks the model in use (its pseudo path, or None).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QDialog, QFrame, QGroupBox, QHBoxLayout, QLabel, QMessageBox, QPushButton,
                               QSizePolicy, QVBoxLayout, QWidget)

from app.remote import labels
from app.remote.client import list_models
from app.remote.policy import is_offline
from app.remote.registry import Server, ServerRegistry
from app.remote.target import parse_remote_model_path
from app.blocking_call import BackgroundCall
from app.widgets.server_dialog import ServerDialog

log = logging.getLogger(__name__)

BADGE_STYLE = "background:#1f4e99;color:white;border-radius:8px;padding:2px 8px;font-weight:600;"


def host_badge(host: str) -> QLabel:
    badge = QLabel(labels.badge_text(host))
    badge.setObjectName("hostBadge")
    badge.setStyleSheet("QLabel#hostBadge{" + BADGE_STYLE + "}")
    badge.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
    badge.setToolTip(f"Runs on the server {host}: your messages are sent there.")
    return badge


def _muted(label: QLabel) -> QLabel:
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    label.setWordWrap(True)
    return label


class _ServerCard(QFrame):
    def __init__(self, section: "ServersSection", server: Server, current: tuple[str, str] | None) -> None:
        super().__init__()
        self.server = server
        self.setObjectName(f"server-{server.id}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        usable = server.on_this_computer or not is_offline()
        outer = QVBoxLayout(self)
        top = QHBoxLayout()
        title = QLabel(f"<b>{server.label}</b>")
        title.setTextFormat(Qt.TextFormat.RichText)
        top.addWidget(title)
        where = _muted(QLabel(server.base_url))
        where.setWordWrap(False)
        where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(where, 1)
        if server.encrypted:
            lock = QLabel("🔒 " + ("trusted certificate" if server.trusted_cert_pem else "https"))
            lock.setToolTip("Encrypted; the certificate is verified" if not server.trusted_cert_pem else
                            "Encrypted; only the certificate you trusted for this server is accepted")
            top.addWidget(lock)
        self.refresh_btn = QPushButton("Refresh models")
        self.edit_btn = QPushButton("Edit…")
        self.remove_btn = QPushButton("Remove")
        for b in (self.refresh_btn, self.edit_btn, self.remove_btn):
            b.setAccessibleName(f"{b.text().rstrip('…')} {server.label}")
            top.addWidget(b)
        outer.addLayout(top)
        if not server.encrypted and not server.on_this_computer:
            outer.addWidget(_muted(QLabel(labels.plain_http_warning(server.host))))
        if not usable:
            off = QLabel(labels.offline_note())
            off.setObjectName("offlineServer")
            off.setStyleSheet("color:#9a6700;")
            outer.addWidget(off)
        self.status = _muted(QLabel(""))
        self.status.setObjectName("serverStatus")
        self.status.setVisible(False)
        outer.addWidget(self.status)
        self.use_buttons: dict[str, QPushButton] = {}
        for model in server.models:
            row = QHBoxLayout()
            row.addWidget(QLabel(model.id))
            row.addWidget(host_badge(server.host))
            if model.max_context:
                context = _muted(QLabel(f"context {model.max_context:,} tokens"))
                context.setWordWrap(False)
                row.addWidget(context)
            row.addStretch(1)
            in_use = current == (server.id, model.id)
            use = QPushButton("In use" if in_use else "Use")
            use.setObjectName("useRemoteModel")
            use.setAccessibleName(f"Use {model.id} on {server.host}")
            use.setEnabled(usable and not in_use)
            use.clicked.connect(lambda _=False, m=model.id: section.use_requested.emit(server.target(m)))
            self.use_buttons[model.id] = use
            row.addWidget(use)
            outer.addLayout(row)
        if not server.models:
            outer.addWidget(_muted(QLabel("No models listed yet: press Refresh models.")))
        self.refresh_btn.setEnabled(usable)
        self.refresh_btn.clicked.connect(lambda: section.refresh_server(server.id))
        self.edit_btn.clicked.connect(lambda: section.edit_server(server.id))
        self.remove_btn.clicked.connect(lambda: section.remove_server(server.id))


class ServersSection(QGroupBox):
    use_requested = Signal(object)
    status_message = Signal(str)

    def __init__(self, registry: ServerRegistry, parent: QWidget | None = None) -> None:
        super().__init__("On servers you run", parent)
        self.setObjectName("serversSection")
        self.registry = registry
        self._current: tuple[str, str] | None = None
        self._calls: dict[str, BackgroundCall] = {}
        layout = QVBoxLayout(self)
        self.intro = _muted(QLabel("A model too big for this computer can run on a machine you control "
                                   "(vLLM, SGLang, llama-server or another Lantern). Nothing is sent anywhere "
                                   "until you add a server."))
        layout.addWidget(self.intro)
        self.cards_layout = QVBoxLayout()
        layout.addLayout(self.cards_layout)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add a server…")
        self.add_button.setObjectName("addServer")
        self.add_button.setAccessibleName("Add a server")
        buttons.addWidget(self.add_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.add_button.clicked.connect(self.add_server)
        self.cards: list[_ServerCard] = []
        self.refresh()

    # ---- public -------------------------------------------------------------------------------
    def set_current(self, path: Path | str | None) -> None:
        self._current = parse_remote_model_path(path) if path is not None else None
        self.refresh()

    def refresh(self) -> None:
        for card in self.cards:
            self.cards_layout.removeWidget(card)
            card.setParent(None)
            card.deleteLater()
        self.cards = [_ServerCard(self, s, self._current) for s in self.registry.servers()]
        for card in self.cards:
            self.cards_layout.addWidget(card)

    def card(self, server_id: str) -> _ServerCard | None:
        return next((c for c in self.cards if c.server.id == server_id), None)

    # ---- actions ------------------------------------------------------------------------------
    def make_dialog(self, server: Server | None = None) -> ServerDialog:
        return ServerDialog(self.registry, self, server)

    def add_server(self) -> None:
        self._run_dialog(self.make_dialog())

    def edit_server(self, server_id: str) -> None:
        server = self.registry.get(server_id)
        if server is not None:
            self._run_dialog(self.make_dialog(server))

    def _run_dialog(self, dialog: ServerDialog) -> None:
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.saved_server is not None:
            saved = dialog.saved_server
            text = f"Server {saved.label} saved: {len(saved.models)} model(s)."
            if not dialog.key_in_keyring:
                text += (" No system keyring is available, so its API key is kept for this session only "
                         "and will be asked for again.")
            self.status_message.emit(text)
            self.refresh()

    def refresh_server(self, server_id: str) -> None:
        """List the server's models again (off the GUI thread)."""
        server = self.registry.get(server_id)
        if server is None:
            return
        call = self._calls.get(server_id)
        if call is None:
            call = self._calls[server_id] = BackgroundCall(self)
            call.done.connect(lambda models, sid=server_id: self._on_listed(sid, models))
            call.failed.connect(lambda error, sid=server_id: self._on_list_failed(sid, error))
        card = self.card(server_id)
        if card is not None:
            card.status.setText(f"Connecting to {server.host}…")
            card.status.setVisible(True)
        call.start(lambda: list_models(server.base_url, self.registry.key(server.id), server.trusted_cert_pem),
                   "list-models")

    def _on_listed(self, server_id: str, models: object) -> None:
        if self.registry.get(server_id) is None:
            return
        server = self.registry.update(server_id, models=models)   # type: ignore[arg-type]
        self.refresh()
        self.status_message.emit(f"{server.label}: {len(server.models)} model(s) offered.")

    def _on_list_failed(self, server_id: str, error: object) -> None:
        card = self.card(server_id)
        if card is not None:
            card.status.setText(str(error))
            card.status.setStyleSheet("color:#b42318;")
            card.status.setVisible(True)
        self.status_message.emit(str(error))

    def remove_server(self, server_id: str, *, confirm: bool = True) -> None:
        server = self.registry.get(server_id)
        if server is None:
            return
        if confirm:
            answer = QMessageBox.question(
                self, "Remove server", f"Remove {server.label} ({server.base_url})?\n\nIts API key is deleted from "
                "the keyring. Chats with its models stay in your history.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.registry.remove(server_id)
        self.refresh()
        self.status_message.emit(f"Server {server.label} removed.")
