"""“Add a server…”: the address, an optional API key (kept in the OS keyring), and Test connection,
which lists the server's models. A self-signed certificate is trusted only by ticking a box that
names its fingerprint. Network and keyring calls run off the GUI thread."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QListWidget,
                               QPushButton, QVBoxLayout, QWidget)

from app.remote import labels
from app.remote.client import ServerModel, list_models
from app.remote.errors import CertificateNotTrusted, InvalidServerAddress, RemoteError
from app.remote.policy import is_loopback_url, is_offline
from app.remote.registry import Server, ServerRegistry, normalize_base_url
from app.remote.target import host_label
from app.remote.tls import fetch_certificate, fingerprint
from app.blocking_call import BackgroundCall

log = logging.getLogger(__name__)

INTRO = ("Use a gpt-oss model that runs on a machine you control: vLLM, SGLang, llama-server, or another "
         "Lantern (python -m engine serve). Your messages are sent to that server when you chat with its models.")


@dataclass(frozen=True)
class _TestResult:
    url: str
    models: list[ServerModel]
    cert_pem: str | None


@dataclass(frozen=True)
class _CertificateOffer:
    """Verification failed; this is the certificate the server presented, for the user to judge."""

    url: str
    error: str
    pem: str


class ServerDialog(QDialog):
    """Add a server (or, with `server`, change one). `saved_server` is set after Save."""

    def __init__(self, registry: ServerRegistry, parent: QWidget | None = None, server: Server | None = None) -> None:
        super().__init__(parent)
        self.registry = registry
        self.server = server
        self.saved_server: Server | None = None
        self.key_in_keyring = True
        self._tested: _TestResult | None = None
        self._offered_pem: str | None = server.trusted_cert_pem if server is not None else None
        self.setWindowTitle("Add a server" if server is None else f"Server {server.label}")
        self.setObjectName("serverDialog")
        self.resize(620, 520)
        root = QVBoxLayout(self)
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        root.addWidget(intro)
        form = QFormLayout()
        self.url_edit = QLineEdit(server.base_url if server else "")
        self.url_edit.setPlaceholderText("http://gpu-box:8000/v1")
        self.url_edit.setAccessibleName("Server address")
        self.name_edit = QLineEdit(server.name if server else "")
        self.name_edit.setPlaceholderText("optional, e.g. Team workstation")
        self.name_edit.setAccessibleName("Server name")
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setAccessibleName("API key")
        self.key_edit.setPlaceholderText("stored in the system keyring; leave empty to keep it" if server and server.has_key
                                         else "optional; kept in the system keyring, never in a file")
        form.addRow("Address:", self.url_edit)
        form.addRow("Name:", self.name_edit)
        form.addRow("API key:", self.key_edit)
        root.addLayout(form)
        self.warning = QLabel("")
        self.warning.setObjectName("serverWarning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color:#9a6700;")
        root.addWidget(self.warning)
        self.test_button = QPushButton("Test connection")
        self.test_button.setAccessibleName("Test connection")
        root.addWidget(self.test_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.result = QLabel("")
        self.result.setObjectName("testResult")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        root.addWidget(self.result)
        self.trust_box = QCheckBox("")
        self.trust_box.setObjectName("trustCertificate")
        self.trust_box.setVisible(False)
        root.addWidget(self.trust_box)
        self.models_list = QListWidget()
        self.models_list.setAccessibleName("Models the server offers")
        self.models_list.setVisible(False)
        root.addWidget(self.models_list, 1)
        root.addStretch(0)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.save_button = self.buttons.addButton("Add server" if server is None else "Save",
                                                  QDialogButtonBox.ButtonRole.AcceptRole)
        self.save_button.setEnabled(False)
        self.save_button.setToolTip("Test the connection first")
        root.addWidget(self.buttons)

        self._call = BackgroundCall(self)
        self._call.done.connect(self._on_tested)
        self._call.failed.connect(self._on_test_failed)
        self._save_call = BackgroundCall(self)
        self._save_call.done.connect(self._on_saved)
        self._save_call.failed.connect(self._on_save_failed)
        self.test_button.clicked.connect(self.test_connection)
        self.buttons.rejected.connect(self.reject)
        self.save_button.clicked.connect(self.save)
        self.url_edit.textChanged.connect(self._inputs_changed)
        self.key_edit.textChanged.connect(self._inputs_changed)
        self.trust_box.toggled.connect(self._trust_toggled)
        self._inputs_changed()

    # ---- state ----------------------------------------------------------------------------------
    def _url(self) -> str | None:
        try:
            return normalize_base_url(self.url_edit.text())
        except InvalidServerAddress:
            return None

    def _inputs_changed(self) -> None:
        self._tested = None
        self.save_button.setEnabled(False)
        url = self._url()
        notes = []
        if url is not None and url.startswith("http://") and not is_loopback_url(url):
            notes.append(labels.plain_http_warning(host_label(url)))
        if url is not None and is_offline() and not is_loopback_url(url):
            notes.append(labels.offline_note())
        self.warning.setText("\n".join(notes))
        self.warning.setVisible(bool(notes))
        self.test_button.setEnabled(bool(self.url_edit.text().strip()) and not self._call.running)

    def _stored_key(self) -> str | None:
        """The key kept for the server being edited (a keyring read: call it off the GUI thread)."""
        return self.registry.key(self.server.id) if self.server is not None and self.server.has_key else None

    # ---- Test connection ------------------------------------------------------------------------
    def test_connection(self) -> None:
        try:
            url = normalize_base_url(self.url_edit.text())
        except InvalidServerAddress as exc:
            self._show_error(str(exc))
            return
        typed_key = self.key_edit.text().strip()
        pem = self._offered_pem if self.trust_box.isChecked() or (self.server and self.server.trusted_cert_pem) \
            else None
        self.result.setStyleSheet("")
        self.result.setText(f"Connecting to {host_label(url)}…")
        self.test_button.setEnabled(False)
        self.models_list.setVisible(False)

        def work() -> _TestResult | _CertificateOffer:
            key = typed_key or self._stored_key()
            try:
                return _TestResult(url, list_models(url, key, pem), pem)
            except CertificateNotTrusted as exc:
                return _CertificateOffer(url, str(exc), fetch_certificate(url))

        self._call.start(work, "test-connection")

    def _on_tested(self, outcome: object) -> None:
        self.test_button.setEnabled(True)
        if isinstance(outcome, _CertificateOffer):
            self._offered_pem = outcome.pem
            self._show_error(outcome.error)
            self.trust_box.blockSignals(True)
            self.trust_box.setChecked(False)
            self.trust_box.blockSignals(False)
            self.trust_box.setText(f"Trust this certificate for {host_label(outcome.url)} only if its SHA-256 "
                                   f"fingerprint is the server's:\n{fingerprint(outcome.pem)}")
            self.trust_box.setVisible(True)
            return
        assert isinstance(outcome, _TestResult)
        self._tested = outcome
        models = outcome.models
        self.models_list.clear()
        for m in models:
            context = f"  ·  context {m.max_context:,} tokens" if m.max_context else ""
            self.models_list.addItem(f"{m.id}{context}")
        self.models_list.setVisible(bool(models))
        self.result.setStyleSheet("color:#1e7b34;")
        host = host_label(outcome.url)
        self.result.setText(f"Connected to {host}: {len(models)} model{'s' if len(models) != 1 else ''} offered."
                            if models else f"Connected to {host}, but it lists no models.")
        self.save_button.setEnabled(True)
        self.save_button.setToolTip("")

    def _on_test_failed(self, error: object) -> None:
        self.test_button.setEnabled(True)
        self._show_error(str(error) if isinstance(error, RemoteError) else f"Test failed: {error}")

    def _trust_toggled(self, checked: bool) -> None:
        if checked:
            self.test_connection()

    def _show_error(self, text: str) -> None:
        self.result.setStyleSheet("color:#b42318;")
        self.result.setText(text)
        self.save_button.setEnabled(False)

    # ---- Save -----------------------------------------------------------------------------------
    def save(self) -> None:
        tested = self._tested
        if tested is None:
            return
        typed_key = self.key_edit.text().strip()
        name = self.name_edit.text().strip()
        existing = self.server
        self.save_button.setEnabled(False)

        def work() -> tuple[Server, bool]:       # the keyring may block (an unlock prompt)
            if existing is None:
                return self.registry.add(tested.url, api_key=typed_key or None, name=name,
                                         trusted_cert_pem=tested.cert_pem, models=tested.models)
            server = self.registry.update(existing.id, base_url=tested.url, name=name,
                                          trusted_cert_pem=tested.cert_pem, models=tested.models)
            return self.registry.set_key(existing.id, typed_key) if typed_key else (server, True)

        self._save_call.start(work, "save-server")

    def _on_saved(self, result: object) -> None:
        server, in_keyring = result  # type: ignore[misc]
        self.saved_server, self.key_in_keyring = server, in_keyring
        self.accept()

    def _on_save_failed(self, error: object) -> None:
        self.save_button.setEnabled(True)
        self._show_error(f"Could not save the server: {error}")
