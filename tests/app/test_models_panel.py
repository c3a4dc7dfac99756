"""pytest-qt tests of ModelManagerPanel: states, progress, fit verdicts, confirmations, signals."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from app.models.fit import SystemMemory
from app.models.local import ModelState
from app.models.units import format_bytes
from tests.app.fakehub import tiny_repo, write_repo
from tests.app.models_support import (GIB, REPO, bytes_on_disk, dialogs, hub, make_manager, online,  # noqa: F401
                                      panel_for, repo_files)


def _row(panel, name):
    return next(r for r in panel.local_rows if getattr(r, "model", None) is not None and r.model.name == name)


def test_catalog_shows_sizes_and_fit_verdicts(panel_for, qtbot):
    m, panel = panel_for()                         # 32 GiB RAM, 24 GiB GPU
    c20, c120 = panel.cards[REPO], panel.cards["openai/gpt-oss-120b"]
    assert c20.badge.text() == "Fits" and c120.badge.text() == "Will not fit"
    assert "about 13.8 GB" in c20.sizes.text() and "8,192 tokens" in c20.sizes.text()
    assert c20.download_btn.isVisible() and not c20.pause_btn.isVisible() and not c20.progress.isVisible()
    assert c120.fit_note.isVisible() and not c20.fit_note.isVisible()
    assert "No models yet" in panel.local_rows[0].text()
    with qtbot.waitSignal(panel.context_length_changed) as sig:
        panel.context_combo.setCurrentIndex(panel.context_combo.findData(131072))
    assert sig.args == [131072] and m.context_length == 131072
    need = format_bytes(m.catalog_rows()[0].entry.memory_needed_bytes(131072))
    assert f"needs {need} of memory at 131,072 tokens" in c20.sizes.text()


def test_fits_on_cpu_only_verdict(panel_for):
    _m, panel = panel_for(system=SystemMemory(24 * GIB, None))
    assert panel.cards[REPO].badge.text() == "Fits on the CPU only"
    assert "no NVIDIA GPU" in panel.cards[REPO].fit_note.text()


def test_download_progress_pause_resume_load_unload(panel_for, qtbot, hub, tmp_path):
    hub.delay_per_chunk_s = 0.02
    hub.chunk = 16 * 1024
    m, panel = panel_for()
    card = panel.cards[REPO]
    progress = []
    panel.download_progress.connect(lambda r, d, t: progress.append((r, d, t)))
    card.download_btn.click()
    qtbot.waitUntil(lambda: card.progress.value() > 50, timeout=10000)
    assert card.pause_btn.isVisible() and card.cancel_btn.isVisible() and not card.download_btn.isVisible()
    assert " of " in card.status.text() and "kB" in card.status.text()
    assert progress and progress[-1][0] == REPO and 0 < progress[-1][1] < progress[-1][2]
    with qtbot.waitSignal(panel.status_message, timeout=5000,
                          check_params_cb=lambda s: "Paused" in s):
        card.pause_btn.click()
    qtbot.waitUntil(lambda: card.resume_btn.isVisible())
    assert not card.pause_btn.isVisible() and "Paused at" in card.status.text()
    assert _row(panel, "gpt-oss-20b").model.state == ModelState.PAUSED
    hub.delay_per_chunk_s = 0.0
    card.resume_btn.click()
    qtbot.waitUntil(lambda: _row(panel, "gpt-oss-20b").model.state == ModelState.READY, timeout=10000)
    row = _row(panel, "gpt-oss-20b")
    assert row.load_btn.isEnabled() and "verified" in card.status.text()
    with qtbot.waitSignal(panel.load_requested) as sig:
        row.load_btn.click()
    assert sig.args == [tmp_path / "models" / "gpt-oss-20b"]
    assert m.last_loaded == tmp_path / "models" / "gpt-oss-20b"
    panel.set_loaded(sig.args[0])
    row = _row(panel, "gpt-oss-20b")
    assert row.unload_btn.isVisibleTo(row) and not row.load_btn.isVisibleTo(row)
    assert "loaded" in row.state_label.text()
    with qtbot.waitSignal(panel.unload_requested):
        row.unload_btn.click()


def test_delete_asks_with_the_space_freed(panel_for, qtbot, dialogs, tmp_path):
    asked, queue = dialogs
    m, panel = panel_for()
    m.download_blocking(REPO)
    qtbot.waitUntil(lambda: any(getattr(r, "model", None) for r in panel.local_rows))
    folder = tmp_path / "models" / "gpt-oss-20b"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    panel.set_loaded(folder)
    queue.append("Keep")
    _row(panel, "gpt-oss-20b").delete_btn.click()
    assert folder.exists() and f"frees {format_bytes(size)}" in asked[-1].text and "unloaded first" in asked[-1].text
    assert asked[-1].default == asked[-1].escape == "Keep"
    queue.append("Delete")
    with qtbot.waitSignal(panel.unload_requested):
        _row(panel, "gpt-oss-20b").delete_btn.click()
    qtbot.waitUntil(lambda: "freed" in panel.notice.text())
    assert not folder.exists()
    assert f"{format_bytes(size)} freed" in panel.notice.text()
    assert "No models yet" in panel.local_rows[0].text()


def test_cancel_download_asks_and_deletes(panel_for, qtbot, hub, dialogs, tmp_path):
    asked, queue = dialogs
    hub.delay_per_chunk_s = 0.02
    hub.chunk = 16 * 1024
    _m, panel = panel_for()
    card = panel.cards[REPO]
    card.download_btn.click()
    folder = tmp_path / "models" / "gpt-oss-20b"
    qtbot.waitUntil(lambda: bytes_on_disk(folder) > 50_000, timeout=10000)
    queue.append("Cancel download")
    card.cancel_btn.click()
    assert "will be deleted" in asked[-1].text
    qtbot.waitUntil(lambda: not folder.exists() and card.download_btn.isVisible(), timeout=10000)


def test_import_valid_and_invalid_folder(panel_for, qtbot, monkeypatch, tmp_path):
    _m, panel = panel_for()
    good = write_repo(tmp_path / "mine" / "good", tiny_repo(seed=1))
    bad = tmp_path / "mine" / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "llama"}')
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda p, t, text, *a: warnings.append(text)))
    picks = [str(bad), str(good)]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: picks.pop(0)))
    panel.import_btn.click()
    assert warnings and "llama" in warnings[0]
    assert not any(getattr(r, "model", None) for r in panel.local_rows)
    panel.import_btn.click()
    row = _row(panel, "good")
    assert row.model.imported and row.model.state == ModelState.READY
    assert row.delete_btn.text() == "Remove from list"


def test_load_warns_when_it_will_not_fit(panel_for, qtbot, dialogs, tmp_path):
    asked, queue = dialogs
    m, panel = panel_for(system=SystemMemory(1 * GIB, None))
    m.import_folder(write_repo(tmp_path / "mine" / "m", tiny_repo(seed=1)))
    qtbot.waitUntil(lambda: any(getattr(r, "model", None) for r in panel.local_rows))
    got = []
    panel.load_requested.connect(got.append)
    queue.append("Don't load")
    _row(panel, "m").load_btn.click()
    assert got == [] and "not fit" in asked[-1].text and asked[-1].default == "Don't load"


def test_change_folder_moves_and_reports(panel_for, qtbot, dialogs, monkeypatch, tmp_path):
    asked, queue = dialogs
    m, panel = panel_for()
    m.download_blocking(REPO)
    target = tmp_path / "elsewhere"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(target)))
    queue.append("Move models")
    with qtbot.waitSignal(panel.models_dir_changed, timeout=10000) as sig:
        panel.move_btn.click()
    assert Path(sig.args[0]) == target.resolve() and "copied and checked" in asked[-1].text
    assert str(target.resolve()) in panel.folder_label.text()
    assert _row(panel, "gpt-oss-20b").model.state == ModelState.READY


def test_verify_button_finds_corruption(panel_for, qtbot, tmp_path):
    m, panel = panel_for()
    m.download_blocking(REPO)
    qtbot.waitUntil(lambda: any(getattr(r, "model", None) for r in panel.local_rows))
    shard = tmp_path / "models" / "gpt-oss-20b" / "model-00001-of-00002.safetensors"
    st = shard.stat()
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    import os
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    panel.refresh()
    assert _row(panel, "gpt-oss-20b").model.state == ModelState.READY
    _row(panel, "gpt-oss-20b").verify_btn.click()
    card = panel.cards[REPO]
    # The verify's result (not a refresh that ran while it wrote the manifest) updates row and card.
    qtbot.waitUntil(lambda: _row(panel, "gpt-oss-20b").model.state == ModelState.CORRUPT
                    and card.download_btn.text() == "Download again to repair", timeout=10000)
    row = _row(panel, "gpt-oss-20b")
    assert not row.load_btn.isEnabled() and shard.name in row.model.message
    assert card.download_btn.isVisibleTo(card) and "damaged" in row.result_label.text()
