"""Integration gaps between the window and its parts: offline mode and download queue at start,
download progress in the status bar, saving during a pause in the stream, the thinking counter,
replies ended by a tool call or the length limit, and the RAM check before a load."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from app.application import Application
from app.history.store import HistoryStore
from app.models import network
from app.models.catalog import _HF_COMMON
from app.models.downloader import ProgressSnapshot
from app.models.events import DownloadProgress, DownloadStateChanged, JobState
from app.models.manager import ModelManager
from app.models.units import format_bytes
from app.settings import SettingsStore
from engine.config import load_config
from engine.types import ChatEvent, Delta, Finished, GenerationParams, Message, Usage
from tests.app.conftest import Env
from tests.app.fakes import DEFAULT_ANALYSIS, DEFAULT_FINAL, FakeEngine, FakeFactory

GB = 1000**3


@pytest.fixture
def make_app(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Application]]:  # noqa: ANN001
    """An Application whose settings are given before it is built (the env fixture's are defaults)."""
    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LANTERN_CONFIG_DIR", str(tmp_path / "config"))
    started: list[str] = []
    monkeypatch.setattr(ModelManager, "start_download", lambda self, repo_id: started.append(repo_id))
    made: list[Application] = []

    def make(*, autoload: bool = False, **settings: Any) -> Application:
        store = SettingsStore(tmp_path / "settings.json")
        store.update(**settings)
        application = Application(QApplication.instance(), store=HistoryStore(tmp_path / "history.sqlite3"),
                                  settings=store, engine_factory=FakeFactory(FakeEngine()))
        application.started_downloads = started  # type: ignore[attr-defined]
        qtbot.addWidget(application.window)
        made.append(application)
        application.start(autoload=autoload)
        return application

    network.set_offline(False)
    yield make
    for application in made:
        application.shutdown()
    network.set_offline(False)


def queue_download(tmp_path: Path, repo_id: str = "openai/gpt-oss-20b") -> None:
    """A download that was running when the app last quit."""
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "downloads.json").write_text(json.dumps({"version": 1, "jobs": [
        {"repo_id": repo_id, "state": "downloading"}]}))


# ---------------------------------------------------------------------------------------- 1 offline, queue

def test_offline_setting_is_applied_at_start_and_when_it_changes(make_app, tmp_path: Path) -> None:  # noqa: ANN001
    queue_download(tmp_path)
    application = make_app(offline=True)
    assert network.is_offline() and os.environ.get("HF_HUB_OFFLINE") == "1"
    assert application.started_downloads == []  # offline: the queue waits
    application.settings.update(offline=False)
    assert not network.is_offline() and "HF_HUB_OFFLINE" not in os.environ
    assert application.started_downloads == ["openai/gpt-oss-20b"]  # back online: it resumes
    application.settings.update(offline=True)
    assert network.is_offline() and os.environ.get("HF_HUB_OFFLINE") == "1"


def test_a_queued_download_resumes_at_start_and_shows_in_the_status_bar(make_app, tmp_path: Path,  # noqa: ANN001
                                                                        qtbot) -> None:  # noqa: ANN001
    queue_download(tmp_path)
    application = make_app()
    assert application.started_downloads == ["openai/gpt-oss-20b"]  # without opening the Models window
    assert application.window._models_dialog is None
    status = application.window.status
    assert status.download_label.isHidden()
    snapshot = ProgressSnapshot(done_bytes=3 * GB, total_bytes=12 * GB, speed_bps=25e6, eta_s=360.0,
                                current_file="model-00001-of-00002.safetensors", network_bytes=3 * GB)
    # as a download thread does
    thread = threading.Thread(target=application.models._emit,
                              args=(DownloadProgress("openai/gpt-oss-20b", snapshot),))
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: status.download_label.isVisible(), timeout=2000)
    assert "gpt-oss-20b" in status.download_label.text() and "25%" in status.download_label.text()
    assert status.download_bar.isVisible() and status.download_bar.value() == 250
    assert "3.0 GB of 12.0 GB" in status.download_label.toolTip() and "6 min left" in status.download_label.toolTip()
    application.models._emit(DownloadStateChanged("openai/gpt-oss-20b", JobState.DONE, "Downloaded."))
    qtbot.waitUntil(lambda: status.download_label.isHidden(), timeout=2000)
    assert status.download_bar.isHidden()
    assert "downloaded" in application.window.statusBar().currentMessage()


# ---------------------------------------------------------------------------------------- 2, 3 pauses

class PausingEngine(FakeEngine):
    """Streams `pieces`, then waits (no more deltas) until `release` is set, then finishes."""

    def __init__(self, pieces: list[tuple[str, str]]) -> None:
        super().__init__()
        self.pieces = pieces
        self.release = threading.Event()

    def chat(self, session: Any, messages: Sequence[Message], params: GenerationParams,
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[ChatEvent]:
        def stream() -> Iterator[ChatEvent]:
            for channel, text in self.pieces:
                time.sleep(0.04)  # past the worker's 30 ms coalescing: each piece reaches the GUI at once
                yield Delta(channel, text)  # type: ignore[arg-type]
            while not self.release.wait(0.02):
                if should_stop():
                    yield Finished("cancelled", Usage())
                    return
            yield Finished("stop", Usage(prompt_tokens=5, completion_tokens=len(self.pieces)))
        return stream()


def pausing(env: Env, pieces: list[tuple[str, str]]) -> PausingEngine:
    engine = PausingEngine(pieces)
    env.factory.engine = engine
    env.load()
    return engine


def test_a_pause_in_the_stream_still_gets_saved(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.chat_controller as cc

    monkeypatch.setattr(cc, "SAVE_INTERVAL_S", 0.2)
    engine = pausing(env, [("analysis", "Considering. "), ("final", "Hello"), ("final", " there")])
    try:
        assert env.controller.send("hi")
        reply_id = env.controller.turn.message_id
        env.qtbot.waitUntil(lambda: env.controller.turn is not None and env.controller.turn.final == "Hello there",
                            timeout=3000)
        # no delta arrives any more; within about two intervals the text is on disk anyway
        env.qtbot.waitUntil(lambda: env.store.get_message(reply_id).content == "Hello there", timeout=1500)
        saved = env.store.get_message(reply_id)
        assert saved.status == "streaming" and saved.reasoning == "Considering. " and env.controller.turn is not None
    finally:
        engine.release.set()
    env.wait_idle()
    assert env.store.get_message(reply_id).status == "done"


def test_thinking_counter_advances_without_new_reasoning_text(env: Env) -> None:
    engine = pausing(env, [("analysis", "Let me think about this.")])
    try:
        assert env.controller.send("a hard question")
        chat = env.window.chat
        env.qtbot.waitUntil(lambda: chat.live is not None and "Thinking… 0 s" in chat.live.reasoning_toggle.text(),
                            timeout=3000)
        live, renders = chat.live, chat.render_count
        live._thinking_since -= 7  # as if it had been thinking for 7 s already
        env.qtbot.waitUntil(lambda: "Thinking… 7 s" in live.reasoning_toggle.text(), timeout=1500)
        assert chat.render_count == renders  # the label advanced; the message was not re-rendered
        assert live.reasoning == "Let me think about this."
    finally:
        engine.release.set()
    env.wait_idle()
    assert not env.window.chat._thinking_timer.isActive()
    assert "Thought for" in env.window.chat.widgets[-1].reasoning_toggle.text()


# ---------------------------------------------------------------------------------------- 4 tool call, length

PIECES = len(DEFAULT_ANALYSIS) + len(DEFAULT_FINAL)  # the fake engine counts one token per piece


@pytest.mark.parametrize("reason, max_tokens, words", [
    ("tool_call", 4096, ("tool", "did not run", "attach documents")),
    ("length", PIECES, (f"limit of {PIECES:,} tokens", "Max reply tokens", "Settings")),  # the reply limit
    ("length", 4096, ("filled the model's context", "Context length", "Settings")),      # the context, first
])
def test_a_reply_ended_by_a_tool_call_or_the_length_limit_ends_cleanly_with_a_note(
        env: Env, reason: str, max_tokens: int, words: tuple[str, ...]) -> None:
    env.application.settings.update(max_tokens=max_tokens)
    env.engine.finish_reason = reason
    env.load()
    env.send_and_wait("what is the weather in Paris?")
    reply = env.controller.thread[-1]
    assert reply.status == "done" and reply.error is None and reply.content.startswith("Hello")
    widget = env.window.chat.widgets[-1]
    assert "error" not in widget.status_label.text()
    assert widget.note_label.isVisible() and all(w in widget.note_label.text() for w in words), \
        widget.note_label.text()
    assert env.window.chat.composer.edit.isEnabled() and env.window.chat.banner.isHidden()
    env.window.apply_appearance()  # rebuilt from the history: the note is still there
    again = env.window.chat.widgets[-1]
    assert again is not widget and all(w in again.note_label.text() for w in words)


def test_a_normal_reply_has_no_note(env: Env) -> None:
    env.load()
    env.send_and_wait("hi")
    assert env.window.chat.widgets[-1].note_label.isHidden()


# ---------------------------------------------------------------------------------------- 5 memory

@pytest.fixture
def big_model(tmp_path: Path) -> Path:
    """A folder the engine's config reader takes for gpt-oss-120b (config.json and a weights file)."""
    folder = tmp_path / "gpt-oss-120b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**_HF_COMMON, "num_hidden_layers": 36,
                                                    "num_local_experts": 128}))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def fake_ram(monkeypatch: pytest.MonkeyPatch, available: int, total: int) -> None:
    import engine.fit as mf

    monkeypatch.setattr(mf, "ram_bytes", lambda: (available, total))


def answer_memory_warning(button_text: str, seen: list[str]) -> None:
    """Click a button of the memory warning box once it shows (its exec() runs its own event loop)."""
    tries = iter(range(250))  # give up after 5 s: never click a box of a later test

    def poll() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            if next(tries, None) is not None:
                QTimer.singleShot(20, poll)
            return
        seen.append(box.text() + "\n" + box.informativeText())
        next(b for b in box.buttons() if b.text() == button_text).click()

    QTimer.singleShot(20, poll)


def test_a_model_too_big_for_the_free_ram_is_not_loaded_unless_the_user_insists(
        env: Env, big_model: Path, monkeypatch: pytest.MonkeyPatch, qtbot) -> None:  # noqa: ANN001
    env.application.settings.update(device="cpu", context_length=8192)
    fake_ram(monkeypatch, available=8 * GB, total=16 * GB)
    config, _ = load_config(big_model)
    needed = config.memory_needed_bytes(8192)
    assert needed > 8 * GB
    seen: list[str] = []
    answer_memory_warning("Don't load", seen)
    env.window.request_load(big_model)       # the check runs off the GUI thread, then the box asks
    qtbot.waitUntil(lambda: bool(seen) and env.application.model_controller.checking is None, timeout=5000)
    assert env.factory.requests == [] and env.controller.loading is None
    text = seen[0]
    assert "gpt-oss-120b" in text and format_bytes(needed) in text
    assert "8.0 GB" in text and "16.0 GB" in text and "8,192 tokens" in text
    answer_memory_warning("Load anyway", seen)
    env.window.request_load(big_model)
    qtbot.waitUntil(lambda: env.controller.model is not None, timeout=5000)
    assert env.factory.requests[-1].model_dir == big_model


def test_a_model_that_fits_or_goes_to_a_gpu_loads_without_asking(env: Env, big_model: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake_ram(monkeypatch, available=512 * GB, total=1024 * GB)
    env.application.settings.update(device="cpu")
    models = env.application.model_controller
    assert models.memory_shortfall(big_model) is None
    fake_ram(monkeypatch, available=8 * GB, total=16 * GB)
    env.application.settings.update(device="cuda")  # the engine checks the GPU's free memory itself
    assert models.memory_shortfall(big_model) is None
    env.application.settings.update(device="mps")   # unified memory: the RAM counts
    assert models.memory_shortfall(big_model) is not None


def test_the_ram_of_the_model_loaded_now_counts_as_free(env: Env, big_model: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading replaces the current model, which gives its memory back first (a reload must not warn)."""
    env.application.settings.update(device="cpu", context_length=8192)
    needed = load_config(big_model)[0].memory_needed_bytes(8192)
    env.load()
    held = env.controller.model.memory_needed_bytes
    assert env.controller.model.device == "cpu" and held > 0
    fake_ram(monkeypatch, available=needed - held // 2, total=2 * needed)
    assert env.application.model_controller.memory_shortfall(big_model) is None
    fake_ram(monkeypatch, available=needed - 2 * held, total=2 * needed)
    assert env.application.model_controller.memory_shortfall(big_model) is not None


def test_autoload_at_start_skips_a_model_that_does_not_fit(make_app, big_model: Path,  # noqa: ANN001
                                                           monkeypatch: pytest.MonkeyPatch, qtbot) -> None:  # noqa: ANN001
    fake_ram(monkeypatch, available=4 * GB, total=8 * GB)
    application = make_app(autoload=True, device="cpu", last_model=str(big_model))
    banner = application.window.chat.banner
    qtbot.waitUntil(lambda: banner.isVisible(), timeout=5000)
    assert application.controller.loading is None and application.controller.model is None
    assert banner.isVisible() and "Did not load gpt-oss-120b" in banner.text() and "4.0 GB" in banner.text()


def test_nothing_imports_huggingface_hub_before_the_offline_switch_is_set(tmp_path: Path) -> None:
    """A fresh process: building and starting the app with offline mode on leaves the hub library
    unimported and HF_HUB_OFFLINE set, so any later import of it starts offline."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from app.application import Application\n"
        "from app.history.store import HistoryStore\n"
        "from app.settings import SettingsStore\n"
        "qapp = QApplication([])\n"
        "tmp = Path(sys.argv[1])\n"
        "s = SettingsStore(tmp / 'settings.json'); s.update(offline=True)\n"
        "a = Application(qapp, store=HistoryStore(tmp / 'h.sqlite3'), settings=s)\n"
        "a.start(autoload=False)\n"
        "print('huggingface_hub' in sys.modules, os.environ.get('HF_HUB_OFFLINE'))\n"
        "a.shutdown()\n"
    )
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "LANTERN_DATA_DIR": str(tmp_path / "data"),
           "LANTERN_CONFIG_DIR": str(tmp_path / "config")}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["False", "1"]
