"""Fixtures for the window tests: the real Application (window, controller, worker thread, SQLite
history) in a temporary folder, with a scripted FakeEngine instead of the model."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from app.application import Application
from app.history.store import HistoryStore
from app.settings import SettingsStore
from tests.app.fakes import FakeEngine, FakeFactory
from tests.app.history_support import ticking_store


@dataclass
class Env:
    application: Application
    engine: FakeEngine
    factory: FakeFactory
    qtbot: object

    @property
    def window(self):  # noqa: ANN201
        return self.application.window

    @property
    def controller(self):  # noqa: ANN201
        return self.application.controller

    @property
    def store(self) -> HistoryStore:
        return self.application.store

    def load(self) -> None:
        self.controller.load_model(Path("/models/fake-oss"))
        self.qtbot.waitUntil(lambda: self.controller.model is not None, timeout=5000)

    def send_and_wait(self, text: str) -> None:
        assert self.controller.send(text)
        self.wait_idle()

    def wait_idle(self) -> None:
        self.qtbot.waitUntil(lambda: self.controller.turn is None, timeout=5000)
        self.wait_sidebar()

    def wait_sidebar(self) -> None:
        """The sidebar's list is read off the GUI thread: wait until it shows the latest."""
        self.qtbot.waitUntil(lambda: not self.window.sidebar_pending, timeout=5000)


@pytest.fixture
def env(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:  # noqa: ANN001
    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))  # default models folder etc.
    monkeypatch.setenv("LANTERN_CONFIG_DIR", str(tmp_path / "config"))
    engine = FakeEngine()
    factory = FakeFactory(engine)
    settings = SettingsStore(tmp_path / "settings.json")
    store = HistoryStore(tmp_path / "history.sqlite3")
    application = Application(qtbot_app(qtbot), store=store, settings=settings, engine_factory=factory)
    qtbot.addWidget(application.window)
    application.start(autoload=False)
    yield Env(application, engine, factory, qtbot)
    if engine.gate is not None:
        engine.gate.set()
    application.shutdown()


def qtbot_app(qtbot):  # noqa: ANN001, ANN201
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    assert app is not None
    return app


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    """A HistoryStore in tmp_path whose clock ticks 1000, 1001, ... (the history tests)."""
    with ticking_store(tmp_path / "h.db") as s:
        yield s


@pytest.fixture
def gated(env: Env) -> threading.Event:
    """Make the fake engine wait on an event before each piece (for stop tests)."""
    gate = threading.Event()
    env.engine.gate = gate
    return gate


@pytest.fixture(autouse=True)
def _gc_on_gui_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Qt tests collect garbage on the GUI thread only (as the app does: app/gui_gc.py), so that a
    download or engine thread never destroys a widget left over from an earlier test."""
    if "qtbot" not in request.fixturenames and "qapp" not in request.fixturenames:
        yield
        return
    import gc

    from app.gui_gc import install_gui_gc

    install_gui_gc(request.getfixturevalue("qapp"))
    yield
    gc.collect()
