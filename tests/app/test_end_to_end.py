"""One real run: the window, the real worker thread and the real engine on a tiny random checkpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from app.application import Application
from app.history.store import HistoryStore
from app.settings import SettingsStore

_NEEDED = ("engine.api", "engine.backends", "engine.generate", "engine.sampling")  # branches chat and core
_MISSING = [m for m in _NEEDED if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"engine modules not landed yet: {_MISSING}")


@pytest.fixture
def model_dir(request: pytest.FixtureRequest) -> Path:
    try:
        return Path(request.getfixturevalue("tiny_model_dir"))
    except pytest.FixtureLookupError:
        pytest.skip("tiny_model_dir (tests/conftest.py, branch core) has not landed yet")


def test_real_engine_streams_a_reply_into_the_window(qtbot, tmp_path: Path, model_dir: Path,  # noqa: ANN001
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))
    from PySide6.QtWidgets import QApplication

    settings = SettingsStore(tmp_path / "settings.json")
    settings.update(device="cpu", context_length=1024, max_tokens=16, temperature=0.0, reasoning_effort="low")
    store = HistoryStore(tmp_path / "history.sqlite3")
    application = Application(QApplication.instance(), store=store, settings=settings)  # real engine factory
    qtbot.addWidget(application.window)
    application.start(autoload=False)
    controller = application.controller
    try:
        controller.load_model(model_dir)
        qtbot.waitUntil(lambda: controller.model is not None or not application.window.chat.banner.isHidden(),
                        timeout=60_000)
        assert controller.model is not None, application.window.chat.banner.text()
        assert controller.model.device == "cpu" and controller.model.max_context == 1024
        assert settings.settings.last_model == str(controller.model.path)
        assert controller.send("Hello there")
        qtbot.waitUntil(lambda: controller.turn is None, timeout=60_000)
        reply = store.get_message(controller.thread[-1].id)
        assert reply.role == "assistant" and reply.status == "done", (reply.status, reply.error)
        usage = controller.last_usage
        assert usage is not None and 0 < usage.completion_tokens <= 16 and usage.prompt_tokens > 0
        assert reply.usage is not None and reply.usage["completion_tokens"] == usage.completion_tokens
        assert "context" in application.window.status.context_label.text()
        # a second turn in the same chat reuses the session's cached prefix
        assert controller.send("And again")
        qtbot.waitUntil(lambda: controller.turn is None, timeout=60_000)
        assert controller.last_usage is not None and controller.last_usage.reused_tokens > 0
    finally:
        application.shutdown()


@pytest.mark.slow
def test_self_test_command_loads_the_model_and_streams(model_dir: Path, tmp_path: Path) -> None:
    """What packaging/README.md asks of a build, run on the source tree: `python -m app --self-test --model`."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-m", "app", "--self-test", "--model", str(model_dir)], cwd=root, capture_output=True,
        text=True, timeout=300,
        env={"QT_QPA_PLATFORM": "offscreen", "LANTERN_CONFIG_DIR": str(tmp_path / "c"),
             "LANTERN_DATA_DIR": str(tmp_path / "d"), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "torch-imported=False" in out.stdout and "model-loaded" in out.stdout
    assert "reply-finished reason=length tokens=16" in out.stdout
    assert not (tmp_path / "c").exists()  # the user's settings folder is left alone
