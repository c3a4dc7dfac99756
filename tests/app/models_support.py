"""Fixtures and helpers shared by tests/app/test_models_*.py (import the fixtures by name)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from app.models import network
from app.models.fit import GpuInfo, SystemMemory
from app.models.manager import ModelManager
from tests.app.fakehub import FakeHub, tiny_repo

REPO = "openai/gpt-oss-20b"
GIB = 1024**3
# What the app must fetch: root files the engine reads; not README, original/ or metal/.
ENGINE_FILES = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "model.safetensors.index.json", "model-00000-of-00002.safetensors",
                "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
SYSTEM = SystemMemory(32 * GIB, (GpuInfo("Test GPU", 24 * GIB),))


def wanted_total(files: dict[str, bytes]) -> int:
    return sum(len(files[n]) for n in ENGINE_FILES)


@pytest.fixture
def repo_files() -> dict[str, bytes]:
    return tiny_repo()


@pytest.fixture
def hub(repo_files: dict[str, bytes]) -> Iterator[FakeHub]:
    server = FakeHub(repos={REPO: repo_files})
    yield server
    server.close()


@pytest.fixture(autouse=False)
def online() -> Iterator[None]:
    network.set_offline(False)
    yield
    network.set_offline(False)


@pytest.fixture
def make_manager(tmp_path: Path, hub: FakeHub, online: None) -> Iterator[Callable[..., ModelManager]]:
    made: list[ModelManager] = []

    def make(models_dir: Path | None = None, **kw) -> ModelManager:
        kw.setdefault("endpoint", hub.url)
        kw.setdefault("system", SYSTEM)
        kw.setdefault("retry_backoff_s", 0.05)
        m = ModelManager(models_dir or tmp_path / "models", **kw)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def wait_for(cond: Callable[[], bool], timeout: float = 15.0, step: float = 0.01) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(step)
    raise AssertionError("condition not met in time")


def bytes_on_disk(folder: Path) -> int:
    """Bytes of the engine files there, complete or partial (.part)."""
    total = 0
    for name in ENGINE_FILES:
        for p in (folder / name, folder / (name + ".part")):
            if p.exists():
                total += p.stat().st_size
    return total


ROOT = Path(__file__).resolve().parents[2]
RAW_ERROR = re.compile(r"\[Errno|Errno \d|errno \d|Traceback|HTTPConnectionPool|<urlopen|Error\(")


def assert_plain(text: str) -> None:
    """A message meant for a user: no raw errno text, no exception reprs."""
    assert text and not RAW_ERROR.search(text), text


def cli_env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """Environment for `python -m app.models` pointed at a fake hub (own HF_HOME: no real token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(ROOT), "HF_ENDPOINT": endpoint})
    env.update(extra)
    return env


def run_cli(tmp_path: Path, endpoint: str, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.models", "--models-dir", str(tmp_path / "models"), *args],
                          cwd=ROOT, env=cli_env(tmp_path, endpoint, **env), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def panel_for(qtbot, make_manager):
    """A shown ModelManagerPanel on a manager made by make_manager(**kw)."""
    from app.widgets.models_panel import ModelManagerPanel

    def make(**kw):
        m = make_manager(**kw)
        panel = ModelManagerPanel(m)
        qtbot.addWidget(panel)
        panel.resize(720, 800)
        panel.show()
        return m, panel
    return make


@dataclass
class Asked:
    title: str
    text: str
    buttons: list[str]
    default: str | None
    escape: str | None


@pytest.fixture
def dialogs(monkeypatch):
    """Answer the panel's message boxes: `answers` holds the label of the button to press, in order
    ("Yes"/"No" for the standard ones); each box shown is recorded in `asked`."""
    from PySide6.QtWidgets import QMessageBox

    asked: list[Asked] = []
    answers: list[str] = []

    def exec_(box):
        buttons = [b.text().replace("&", "") for b in box.buttons()]
        default = box.defaultButton()
        escape = box.escapeButton()
        asked.append(Asked(box.windowTitle(), box.text() + "\n" + box.informativeText(), buttons,
                           default.text().replace("&", "") if default else None,
                           escape.text().replace("&", "") if escape else None))
        want = answers.pop(0)
        button = next(b for b in box.buttons() if b.text().replace("&", "") == want)
        box.setProperty("_answered", True)
        monkeypatch.setattr(box, "clickedButton", lambda: button, raising=False)
        return 0

    def question(parent, title, text, *a, **k):          # the static helper: answered by label too
        asked.append(Asked(title, text, ["Yes", "No"], None, None))
        return QMessageBox.StandardButton.Yes if answers.pop(0) == "Yes" else QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "exec", exec_)
    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return asked, answers
