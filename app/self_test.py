"""`lantern --self-test [--model DIR]`: prove a build works, with no person at the window.

Run on the built program (packaging/package_test.py does), it checks what a user's first minute needs:
the window appears (before torch is imported), a checkpoint loads on the worker thread, a reply streams
and lands in the chat history, and the history reads back. Then the parts loaded only when a user reaches
them (app/self_test_features.py): math drawn, the Local API server answering on loopback, documents
indexed and searched, the python tool's kernel run (in its sandbox where bubblewrap is installed), keyring. Without `--model` it writes a tiny random
checkpoint (real tokenizer, real MXFP4 layout; engine.bench.checkpoint) to a temporary folder, so the
check needs no download. Settings and history live in a temporary folder: the user's are never touched.

Each step prints one line, `<step> ... (<ms> ms)`; times are from the process start (as the OS saw it)
for `window-shown`, else the step's own. The last line is `self-test passed` or `self-test FAILED`.
"""

from __future__ import annotations

import logging
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.application import Application
from app.history.store import HistoryStore
from app.self_test_features import run_feature_checks
from app.settings import SettingsStore

log = logging.getLogger(__name__)

TIMEOUT_MS = 300_000
REPLY_TOKENS = 16

# Small enough to write in a few seconds, shaped like gpt-oss (2 layers, 4 experts, real vocabulary).
TINY_SHAPE = dict(layers=2, experts=4, experts_per_token=2, hidden=64, intermediate=64, heads=4, kv_heads=2,
                  head_dim=64, sliding_window=8)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_age_s() -> float:
    """Seconds since this process was started (by the OS's clock; psutil), or since import if unknown."""
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - a platform without the number: fall back
        return time.perf_counter() - _IMPORTED_AT


_IMPORTED_AT = time.perf_counter()


def write_tiny_checkpoint(root: Path) -> Path:
    """A tiny random gpt-oss checkpoint (Hugging Face layout) under `root`; returns its folder."""
    from engine.bench.checkpoint import Shape20b, ensure_checkpoint

    folder, _ = ensure_checkpoint(root, Shape20b(**TINY_SHAPE), seed=0)
    return folder


@dataclass
class _Run:
    """What the steps found; `ok` turns False at the first failure."""

    ok: bool = True
    step_started: float = field(default_factory=time.perf_counter)
    chunks: int = 0
    streamed: str = ""
    first_chunk_ms: float | None = None
    last_error: str = ""

    def report(self, step: str, detail: str, *, ok: bool = True, ms: float | None = None) -> None:
        if ms is None:
            ms = (time.perf_counter() - self.step_started) * 1000
        self.ok = self.ok and ok
        print(f"{step} {detail} ({ms:.0f} ms){'' if ok else ' FAILED'}", flush=True)
        self.step_started = time.perf_counter()


def run_self_test(qapp: QApplication, model_dir: Path | None) -> int:
    """Run the steps in order on the Qt event loop; 0 if all passed."""
    with tempfile.TemporaryDirectory(prefix="lantern-self-test-") as tmp_name:
        tmp = Path(tmp_name)
        settings = SettingsStore(tmp / "settings.json")
        settings.update(max_tokens=REPLY_TOKENS, context_length=2048, temperature=0.0)
        db = tmp / "history.sqlite3"
        application = Application(qapp, store=HistoryStore(db), settings=settings)
        application.api_server.store_path = tmp / "api-responses.sqlite3"   # not the user's data folder
        run = _Run()
        application.start(autoload=False, resume_downloads=False)  # the user's downloads are not ours
        qapp.processEvents()
        torch_early = "torch" in sys.modules
        run.report("window-shown", f"visible={application.window.isVisible()} torch-imported={torch_early}",
                   ok=application.window.isVisible() and not torch_early, ms=process_age_s() * 1000)
        # Then the Local API server on, as the Settings switch does: the feature checks ask it for the loaded
        # model (loopback, a free port). After the window-shown step, so that its start is not counted there.
        settings.update(api_server=True, api_server_port=_free_port())
        c = application.controller
        finished = {"done": False}

        def finish(ok: bool, step: str = "", detail: str = "") -> None:
            if finished["done"]:
                return
            finished["done"] = True
            if step:
                run.report(step, detail, ok=ok)
            qapp.quit()

        def guarded(fn: Callable[..., None]) -> Callable[..., None]:
            def call(*args: Any) -> None:
                try:
                    fn(*args)
                except Exception as error:  # noqa: BLE001 - any failure is this check's answer
                    log.exception("self-test step failed")
                    finish(False, "error", f"{type(error).__name__}: {error}")
            return call

        @guarded
        def on_model() -> None:
            if c.model is not None and c.turn is None and c.conversation_id is None:
                run.report("model-loaded", f"name={c.model.name} device={c.model.device} backend={c.model.backend}")
                if not c.send("Hello"):
                    finish(False, "reply-started", "the chat did not accept the message")
            elif c.model is None and c.loading is None:
                finish(False, "model-failed", run.last_error or application.window.chat.banner.text())

        @guarded
        def on_chunk(turn: Any) -> None:
            run.chunks += 1
            if run.first_chunk_ms is None:
                run.first_chunk_ms = (time.perf_counter() - run.step_started) * 1000
            run.streamed = turn.final

        @guarded
        def on_finished(event: Any, turn: Any) -> None:
            ok = event.reason in ("stop", "length") and run.chunks > 0
            run.report("reply-finished", f"reason={event.reason} tokens={event.usage.completion_tokens} "
                       f"chunks={run.chunks} first-chunk={run.first_chunk_ms or 0:.0f}ms", ok=ok)
            check_history(turn)
            start_feature_checks()

        def start_feature_checks() -> None:
            # Off the GUI thread: the API's generation runs on the engine worker, whose events the window
            # keeps receiving meanwhile.
            server = application.api_server
            api = (server.address, settings.settings.api_key) if server.address else None

            def report(step: str, detail: str, *, ok: bool = True, ms: float = 0.0) -> None:
                run.report(step, detail, ok=ok, ms=ms)

            thread = threading.Thread(target=run_feature_checks, args=(report, tmp, api), name="self-test-features",
                                      daemon=True)
            thread.start()

            def poll() -> None:
                if thread.is_alive():
                    QTimer.singleShot(50, poll)
                else:
                    finish(run.ok)
            poll()

        def check_history(turn: Any) -> None:
            # A second connection, as the next start of the app would open it.
            with HistoryStore(db) as reopened:
                thread = reopened.thread(turn.conversation_id)
            reply = thread[-1] if thread else None
            ok = (len(thread) == 2 and thread[0].content == "Hello" and reply is not None
                  and reply.id == turn.message_id and reply.status == "done"
                  and reply.content == turn.final and reply.reasoning == turn.analysis)
            run.report("history-read-back", f"messages={len(thread)} reply-chars={len(reply.content) if reply else 0} "
                       f"reasoning-chars={len(reply.reasoning) if reply else 0} matches-stream={ok}", ok=ok)

        @guarded
        def start_model() -> None:
            folder = model_dir
            if folder is None:
                folder = write_tiny_checkpoint(tmp / "checkpoint")
                size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
                run.report("checkpoint-written", f"path={folder} bytes={size}")
            c.error.connect(lambda message, kind: setattr(run, "last_error", f"{message} ({kind})"))
            c.model_changed.connect(on_model)
            c.turn_updated.connect(on_chunk)
            c.turn_finished.connect(on_finished)
            c.load_model(folder)

        QTimer.singleShot(0, start_model)
        QTimer.singleShot(TIMEOUT_MS, lambda: finish(False, "timeout", f"after {TIMEOUT_MS // 1000} s"))
        started = time.perf_counter()
        qapp.exec()
        application.shutdown()
        total = time.perf_counter() - started
        print(f"self-test {'passed' if run.ok else 'FAILED'} in {total:.1f} s", flush=True)
    return 0 if run.ok else 1
