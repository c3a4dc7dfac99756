"""The first-run welcome page in the real window: models with size and fit verdict, a download that
will not fit asks first, a finished download opens the chat on that model, and "use a folder" loads one.
Downloads come from the loopback fake hub (tests/app/fakehub.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from app.application import Application
from app.history.store import HistoryStore
from app.models.fit import GpuInfo, SystemMemory
from app.settings import SettingsStore
from app.widgets.welcome_page import WelcomePage
from tests.app.fakehub import FakeHub, tiny_repo
from tests.app.fakes import FakeEngine, FakeFactory

GIB = 1024**3
SMALL_GPU_BOX = SystemMemory(32 * GIB, (GpuInfo("Test GPU", 24 * GIB),))   # 20b fits, 120b does not
R20, R120 = "openai/gpt-oss-20b", "openai/gpt-oss-120b"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    server = FakeHub(repos={R20: tiny_repo()})
    yield server
    server.close()


@pytest.fixture
def first_run(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: FakeHub) -> Iterator[Application]:
    """A first start: empty settings, no model, the model manager talking to the fake hub."""
    from app.models import manager as manager_module
    from app.models import network

    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LANTERN_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(manager_module, "probe_system", lambda gpus=True: SMALL_GPU_BOX)
    network.set_offline(False)
    from PySide6.QtWidgets import QApplication

    application = Application(QApplication.instance(), store=HistoryStore(tmp_path / "history.sqlite3"),
                              settings=SettingsStore(tmp_path / "settings.json"),
                              engine_factory=FakeFactory(FakeEngine()))
    qtbot.addWidget(application.window)
    application.start(autoload=False, resume_downloads=False)
    yield application
    application.shutdown()
    network.set_offline(False)


def _welcome(application: Application) -> WelcomePage:
    page = application.window.welcome
    page.refresh()
    return page


def test_first_run_opens_on_the_welcome_page_with_sizes_and_verdicts(first_run: Application) -> None:
    window = first_run.window
    page = _welcome(first_run)
    assert window.pages.currentWidget() is page
    assert "stays on this machine" in page.findChild(type(page.cards[R20].title), "welcomePrivacy").text()
    small, big = page.cards[R20], page.cards[R120]
    assert small.size.text() == "Download: about 13.8 GB" and big.size.text() == "Download: about 65.3 GB"
    assert ">Fits<" in small.verdict.text() and "Test GPU" in small.explanation.text()
    assert ">Will not fit<" in big.verdict.text()
    assert small.button.text() == big.button.text() == "Download"
    assert page.folder_button.text() == "Use a model folder I already have…"


def test_a_download_that_will_not_fit_asks_first(first_run: Application, qtbot) -> None:
    page = _welcome(first_run)
    asked: list[tuple[str, str]] = []
    page.confirm_wont_fit = lambda parent, title, why: asked.append((title, why)) or False
    qtbot.mouseClick(page.cards[R120].button, Qt.MouseButton.LeftButton)
    assert asked and asked[0][0] == "gpt-oss-120b" and "Needs" in asked[0][1]
    assert first_run.models.job_status(R120) is None           # "Cancel" started nothing
    # The one that fits does not ask.
    asked.clear()
    assert page.start_download(R20)
    assert not asked
    qtbot.waitUntil(lambda: first_run.controller.model is not None, timeout=20_000)


def test_a_finished_download_opens_the_chat_on_that_model(first_run: Application, qtbot) -> None:
    window, c = first_run.window, first_run.controller
    page = _welcome(first_run)
    qtbot.mouseClick(page.cards[R20].button, Qt.MouseButton.LeftButton)
    assert page.cards[R20].progress.isVisible()
    qtbot.waitUntil(lambda: c.model is not None, timeout=20_000)
    expected = first_run.models.models_dir / "gpt-oss-20b"
    assert (expected / "config.json").is_file()                # really downloaded, from the fake hub
    assert c.model.path == expected
    assert window.pages.currentWidget() is window.chat_page
    assert first_run.settings.settings.last_model == str(expected)   # the next start goes straight to the chat


def test_use_a_folder_i_already_have(first_run: Application, qtbot, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    page = _welcome(first_run)
    qtbot.mouseClick(page.folder_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: first_run.controller.model is not None, timeout=10_000)
    assert first_run.controller.model.path == folder
    assert first_run.window.pages.currentWidget() is first_run.window.chat_page


def test_skip_goes_to_the_chat(first_run: Application, qtbot) -> None:
    page = _welcome(first_run)
    qtbot.mouseClick(page.skip_button, Qt.MouseButton.LeftButton)
    assert first_run.window.pages.currentWidget() is first_run.window.chat_page


def test_a_known_model_skips_the_welcome_page(env) -> None:  # noqa: ANN001 - tests/app/conftest.py's env
    env.load()
    assert env.window.pages.currentWidget() is env.window.chat_page
