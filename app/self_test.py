"""`lantern --self-test [--model DIR]`: prove a build works without a person at the window.

Shows the window, reports whether torch was imported before it appeared (it must not be), and with
a model folder also loads it on the worker thread and streams one short reply. Settings live in a
temporary folder, so the user's own settings and history are never touched.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.application import Application
from app.history.store import HistoryStore
from app.settings import SettingsStore

TIMEOUT_MS = 300_000


def run_self_test(qapp: QApplication, model_dir: Path | None) -> int:
    """Print one line per step (CLI output, read by tests and by packaging checks); 0 if all passed."""
    with tempfile.TemporaryDirectory(prefix="lantern-self-test-") as tmp:
        settings = SettingsStore(Path(tmp) / "settings.json")
        settings.update(max_tokens=16, context_length=2048, temperature=0.0)
        application = Application(qapp, store=HistoryStore(Path(tmp) / "history.sqlite3"), settings=settings)
        application.start(autoload=False, resume_downloads=False)  # the user's downloads are not ours
        qapp.processEvents()
        torch_early = "torch" in sys.modules
        print(f"window-shown visible={application.window.isVisible()} torch-imported={torch_early}", flush=True)
        result = {"ok": not torch_early and application.window.isVisible()}
        c = application.controller

        def finish(ok: bool, line: str) -> None:
            print(line, flush=True)
            result["ok"] = result["ok"] and ok
            qapp.quit()

        def on_model() -> None:
            if c.model is not None and c.turn is None and c.conversation_id is None:
                print(f"model-loaded name={c.model.name} device={c.model.device} backend={c.model.backend}",
                      flush=True)
                c.send("Hello")
            elif c.model is None and c.loading is None:
                finish(False, "model-failed " + application.window.chat.banner.text())

        if model_dir is None:
            QTimer.singleShot(0, qapp.quit)
        else:
            c.model_changed.connect(on_model)
            c.turn_finished.connect(lambda event, turn: finish(
                event.reason in ("stop", "length"),
                f"reply-finished reason={event.reason} tokens={event.usage.completion_tokens}"))
            c.load_model(model_dir)
            QTimer.singleShot(TIMEOUT_MS, lambda: finish(False, "timeout"))
        qapp.exec()
        application.shutdown()
    return 0 if result["ok"] else 1
