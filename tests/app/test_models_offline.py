"""Offline mode: the model manager's flows open no socket at all (socket calls patched to raise)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from app.models import network
from app.models.hub import fetch_remote_model
from app.models.errors import HubUnreachableError, OfflineError
from app.models.local import ModelState
from app.models.manager import ModelManager
from tests.app.fakehub import tiny_repo, write_repo
from tests.app.models_support import REPO, SYSTEM, online  # noqa: F401


@pytest.fixture
def no_sockets(monkeypatch):
    attempts: list[object] = []

    def refuse_connect(self, address, *a, **k):
        attempts.append(address)
        raise OSError("network disabled by test")

    def refuse_create(address, *a, **k):
        attempts.append(address)
        raise OSError("network disabled by test")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_connect)
    monkeypatch.setattr(socket, "create_connection", refuse_create)
    yield attempts
    network.set_offline(False)


def test_offline_flows_open_no_socket(no_sockets, tmp_path):
    import huggingface_hub.constants as hub_constants

    models = tmp_path / "models"
    write_repo(models / "gpt-oss-20b", tiny_repo())
    # A download that was running when the app quit: offline, it must not resume.
    (models / "downloads.json").write_text(json.dumps({"version": 1, "jobs": [
        {"repo_id": "openai/gpt-oss-120b", "state": "downloading"}]}))
    m = ModelManager(models, endpoint="http://127.0.0.1:9", offline=True, system=SYSTEM)
    assert hub_constants.HF_HUB_OFFLINE is True
    rows = m.catalog_rows()
    assert [r.entry.repo_id for r in rows] == [REPO, "openai/gpt-oss-120b"]
    assert all(r.download_bytes > 0 and r.fit.needed_bytes > 0 for r in rows)
    assert m.resume_pending() == []
    with pytest.raises(OfflineError):
        m.start_download(REPO)
    with pytest.raises(OfflineError):
        m.refresh_remote(REPO)
    with pytest.raises(OfflineError):
        fetch_remote_model(REPO, endpoint="http://127.0.0.1:9")
    imported = write_repo(tmp_path / "mine", tiny_repo(seed=1))
    assert m.import_folder(imported).state == ModelState.READY
    assert {lm.state for lm in m.local_models()} == {ModelState.READY}
    m.verify(models / "gpt-oss-20b")
    m.move_models_dir(tmp_path / "moved")
    assert m.delete(tmp_path / "moved" / "gpt-oss-20b") > 0
    assert m.disk_usage().free_bytes > 0
    assert no_sockets == []
    # Control: the patch does catch the hub client once offline mode is off.
    (tmp_path / "moved" / "downloads.json").unlink()
    m.offline = False
    with pytest.raises(HubUnreachableError, match="Cannot reach"):
        m.refresh_remote(REPO)
    assert no_sockets
    m.close()


def test_offline_panel_opens_no_socket(no_sockets, tmp_path, qtbot):
    from app.widgets.models_panel import ModelManagerPanel

    m = ModelManager(tmp_path / "models", endpoint="http://127.0.0.1:9", offline=True, system=SYSTEM)
    panel = ModelManagerPanel(m)
    qtbot.addWidget(panel)
    panel.show()
    card = panel.cards[REPO]
    assert panel.offline_label.isVisible()
    assert not card.download_btn.isEnabled()
    panel._start(card.entry)                        # even if forced, nothing connects
    qtbot.wait(50)
    assert "offline" in card.status.text().lower()
    assert no_sockets == []


def test_online_but_idle_opens_no_socket(no_sockets, tmp_path, qtbot):
    """Without offline mode the app still connects only for what the user starts."""
    from app.widgets.models_panel import ModelManagerPanel

    m = ModelManager(tmp_path / "models", endpoint="http://127.0.0.1:9", offline=False, system=SYSTEM)
    panel = ModelManagerPanel(m)
    qtbot.addWidget(panel)
    qtbot.wait(50)                                  # the deferred resume_pending has run
    m.catalog_rows()
    m.local_models()
    assert no_sockets == []


def test_importing_the_manager_and_panel_loads_neither_torch_nor_the_hub_library():
    """huggingface_hub must be imported only after the offline switch could be set; torch never."""
    import subprocess
    import sys

    code = ("import sys, app.models.manager, app.models.__main__; "
            "print('PySide6' in sys.modules, 'torch' in sys.modules, 'huggingface_hub' in sys.modules); "
            "import app.widgets.models_panel; print('torch' in sys.modules, 'huggingface_hub' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False", "False", "False"]     # the core is Qt-free, too


def test_turning_offline_on_stops_downloads_and_off_resumes_them(tmp_path, online):
    from tests.app.fakehub import FakeHub
    from tests.app.models_support import bytes_on_disk, wait_for
    from app.models.events import JobState

    hub = FakeHub(repos={REPO: tiny_repo()}, delay_per_chunk_s=0.01, chunk=16 * 1024)
    try:
        m = ModelManager(tmp_path / "models", endpoint=hub.url, system=SYSTEM)
        folder = tmp_path / "models" / "gpt-oss-20b"
        m.start_download(REPO)
        wait_for(lambda: bytes_on_disk(folder) > 50_000)
        m.offline = True
        wait_for(lambda: not m.is_running(REPO))
        assert m.job_status(REPO).state == JobState.PAUSED and "offline" in m.job_status(REPO).message
        kept = bytes_on_disk(folder)
        assert kept > 0 and list(folder.glob("*.part"))
        hub.reset_counts()
        hub.delay_per_chunk_s = 0.0
        m.offline = False
        wait_for(lambda: m.job_status(REPO).state == JobState.DONE)
        assert hub.total_served() == sum(len(v) for k, v in tiny_repo().items()
                                         if "/" not in k and k != "README.md") - kept
    finally:
        network.set_offline(False)
        hub.close()
