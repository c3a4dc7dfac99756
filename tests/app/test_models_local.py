"""Local models: listing and states, delete, import (valid / invalid, both layouts), moving the
models folder (and an interrupted move), catalog sizes and fit verdicts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import app.models.folder_move as folder_move
import app.models.manager as manager_mod
from app.models.catalog import CATALOG, entry_for, is_wanted
from app.models.errors import InvalidModelError, ModelManagerError
from app.models.events import JobState, MoveFinished
from app.models.fit import GpuInfo, SystemMemory, Verdict, assess, parse_nvidia_smi
from app.models.local import ModelState, inspect_model_dir
from tests.app.fakehub import tiny_config, tiny_repo, write_repo
from tests.app.models_support import (GIB, REPO, hub, make_manager, online, repo_files,  # noqa: F401
                                      wait_for)


def _sizes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _original_layout(root: Path) -> Path:
    """A repo root holding only original/ (reference keys, one model.safetensors)."""
    from safetensors.numpy import save_file
    import numpy as np

    cfg = tiny_config()
    original = {"num_hidden_layers": 2, "num_experts": 4, "experts_per_token": 2, "vocab_size": 256,
                "hidden_size": 64, "intermediate_size": 64, "head_dim": 16, "num_attention_heads": 4,
                "num_key_value_heads": 2, "sliding_window": 8, "initial_context_length": 128,
                "rope_theta": cfg["rope_theta"], "rope_scaling_factor": 32.0, "swiglu_limit": 7.0}
    (root / "original").mkdir(parents=True)
    (root / "original" / "config.json").write_text(json.dumps(original))
    save_file({"embedding.weight": np.zeros((4, 64), dtype=np.float32)}, str(root / "original" / "model.safetensors"))
    return root


def test_delete_frees_the_space_it_says_and_leaves_nothing(make_manager, tmp_path):
    m = make_manager()
    assert m.download_blocking(REPO).state == JobState.DONE
    folder = tmp_path / "models" / "gpt-oss-20b"
    on_disk = _sizes(folder)
    [model] = m.local_models()
    assert model.size_bytes == on_disk
    assert m.disk_usage().models_bytes == on_disk
    m.last_loaded = folder
    assert m.delete(folder) == on_disk
    assert not folder.exists()
    assert m.local_models() == [] and m.disk_usage().models_bytes == 0
    assert m.last_loaded is None


def test_import_valid_folders_in_place_both_layouts(make_manager, tmp_path):
    m = make_manager()
    hf = write_repo(tmp_path / "elsewhere" / "my-gpt-oss", tiny_repo(seed=1))
    orig = _original_layout(tmp_path / "elsewhere" / "ref-layout")
    before = _sizes(tmp_path / "elsewhere")
    assert m.import_folder(hf).state == ModelState.READY
    assert m.import_folder(orig / "original").state == ModelState.READY   # pointing at original/ also works
    listed = {lm.path: lm for lm in make_manager().local_models()}         # remembered in imports.json
    assert set(listed) == {hf.resolve(), (orig / "original").resolve()}
    assert all(lm.imported and lm.state == ModelState.READY for lm in listed.values())
    assert not (tmp_path / "models" / "my-gpt-oss").exists()              # used in place, not copied
    assert m.disk_usage().models_bytes == 0
    # Deleting an imported model only forgets it: the user's files stay.
    assert m.delete(hf.resolve()) == 0
    assert _sizes(tmp_path / "elsewhere") == before
    assert [lm.path for lm in m.local_models()] == [(orig / "original").resolve()]


@pytest.mark.parametrize("breakage,reason", [
    ("llama", "not gpt-oss"),
    ("no_weights", "weights were found"),
    ("truncated", "truncated"),
    ("missing_shard", "missing"),
    ("bad_config", "lacks"),
])
def test_import_invalid_folder_is_refused_and_not_listed(make_manager, tmp_path, breakage, reason):
    folder = write_repo(tmp_path / "bad", tiny_repo(seed=2))
    if breakage == "llama":
        (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    elif breakage == "no_weights":
        for p in folder.glob("*.safetensors"):
            p.unlink()
    elif breakage == "truncated":
        p = folder / "model-00001-of-00002.safetensors"
        p.write_bytes(p.read_bytes()[:-10])
    elif breakage == "missing_shard":
        (folder / "model-00002-of-00002.safetensors").unlink()
    elif breakage == "bad_config":
        cfg = tiny_config()
        del cfg["num_attention_heads"]
        (folder / "config.json").write_text(json.dumps(cfg))
    m = make_manager()
    with pytest.raises(InvalidModelError, match=reason):
        m.import_folder(folder)
    assert m.local_models() == []


def test_folder_copied_in_by_hand_is_listed_with_its_state(make_manager, tmp_path):
    write_repo(tmp_path / "models" / "hand-copied", tiny_repo(seed=4))
    (tmp_path / "models" / "not-a-model").mkdir()
    (tmp_path / "models" / "not-a-model" / "notes.txt").write_text("hi")
    states = {lm.name: lm.state for lm in make_manager().local_models()}
    assert states == {"hand-copied": ModelState.READY, "not-a-model": ModelState.INVALID}


def test_move_models_folder_copies_verifies_then_removes(make_manager, tmp_path, repo_files):
    m = make_manager()
    assert m.download_blocking(REPO).state == JobState.DONE
    imported = write_repo(tmp_path / "elsewhere" / "mine", tiny_repo(seed=5))
    m.import_folder(imported)
    old = tmp_path / "models"
    m.last_loaded = old / "gpt-oss-20b"
    size = _sizes(old)
    model_size = _sizes(old / "gpt-oss-20b")
    seen = []
    new = m.move_models_dir(tmp_path / "bigdisk" / "models", lambda d, t, f: seen.append((d, t)))
    assert m.models_dir == new and not old.exists()
    assert seen[-1] == (size, size)
    assert _sizes(new / "gpt-oss-20b") == model_size
    states = {lm.path: lm.state for lm in m.local_models()}
    assert states == {new / "gpt-oss-20b": ModelState.READY, imported.resolve(): ModelState.READY}
    assert (new / "gpt-oss-20b" / "config.json").read_bytes() == repo_files["config.json"]
    assert m.last_loaded == new / "gpt-oss-20b"
    assert imported.exists()                                   # imported folders stay where they are
    assert not list(new.rglob("*.moving"))


def test_interrupted_move_leaves_the_old_folder_usable(make_manager, tmp_path, monkeypatch):
    m = make_manager()
    assert m.download_blocking(REPO).state == JobState.DONE
    old = tmp_path / "models"
    before = _sizes(old)
    real = folder_move._copy_verified
    calls = [0]

    def failing(src, dst, done, total, cb):
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(28, "No space left on device")
        return real(src, dst, done, total, cb)

    monkeypatch.setattr(folder_move, "_copy_verified", failing)
    finished = []
    m.subscribe(lambda e: finished.append(e) if isinstance(e, MoveFinished) else None)
    m.start_move(tmp_path / "other")
    wait_for(lambda: bool(finished))
    assert finished[0].new_dir is None and str(old) in finished[0].message
    assert m.models_dir == old and _sizes(old) == before
    assert [lm.state for lm in m.local_models()] == [ModelState.READY]
    # Trying again into the same folder works: what the first attempt copied is not a clash.
    (tmp_path / "other" / "gpt-oss-20b" / "config.json.moving").write_bytes(b"half a cop")
    monkeypatch.setattr(folder_move, "_copy_verified", real)
    assert m.move_models_dir(tmp_path / "other") == (tmp_path / "other").resolve()
    assert [lm.state for lm in m.local_models()] == [ModelState.READY] and not old.exists()
    assert not list((tmp_path / "other").rglob("*.moving"))
    # A folder that holds something else is refused.
    (tmp_path / "third" / "gpt-oss-20b").mkdir(parents=True)
    (tmp_path / "third" / "gpt-oss-20b" / "mine.txt").write_text("not ours")
    with pytest.raises(ModelManagerError, match="already holds gpt-oss-20b"):
        m.move_models_dir(tmp_path / "third")


def test_catalog_knows_both_models_offline_with_spec_sizes():
    e20, e120 = entry_for("openai/gpt-oss-20b"), entry_for("openai/gpt-oss-120b")
    assert e20 is not None and e120 is not None and len(CATALOG) == 2
    # gpt-oss-spec §1.1: 20.91 B / 116.83 B parameters; §2.3: 13.76 GB of root weights for 20b.
    assert abs(e20.config.params_total() / 1e9 - 20.91) < 0.01
    assert abs(e120.config.params_total() / 1e9 - 116.83) < 0.01
    assert abs(e20.download_bytes_estimate / 1e9 - 13.79) < 0.05
    assert 65.0e9 < e120.download_bytes_estimate < 65.6e9
    # Memory grows with the context by the KV cache (spec §3: 48 KiB/token for 20b full layers).
    grow = e20.memory_needed_bytes(131072) - e20.memory_needed_bytes(8192)
    assert grow == (131072 - 8192) * 24 * 1024


def test_only_the_engine_files_are_wanted():
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "model.safetensors.index.json", "model-00000-of-00002.safetensors",
                 "model-00014-of-00014.safetensors"):
        assert is_wanted(name), name
    for name in ("original/config.json", "original/model.safetensors", "metal/model.bin", "README.md",
                 "LICENSE", "USAGE_POLICY", ".gitattributes", "original/model--00001-of-00007.safetensors"):
        assert not is_wanted(name), name


def test_fit_verdicts():
    e20, e120 = entry_for("openai/gpt-oss-20b"), entry_for("openai/gpt-oss-120b")
    need20 = e20.memory_needed_bytes(8192)
    gpu24 = SystemMemory(32 * GIB, (GpuInfo("RTX 4090", 24 * GIB),))
    laptop16 = SystemMemory(16 * GIB, None)
    small = SystemMemory(8 * GIB, (GpuInfo("GTX 1070", 8 * GIB),))
    h100 = SystemMemory(64 * GIB, parse_nvidia_smi("NVIDIA H100 80GB HBM3, 81559\n"))
    assert assess(need20, gpu24).verdict == Verdict.FITS
    assert assess(need20, laptop16).verdict == Verdict.CPU_ONLY
    assert assess(need20, small).verdict == Verdict.WONT_FIT
    assert assess(e120.memory_needed_bytes(8192), h100).verdict == Verdict.FITS
    assert assess(e120.memory_needed_bytes(8192), gpu24).verdict == Verdict.WONT_FIT
    # The context length matters: 120b fits a 64 GiB card at 8k tokens, not at 128k (+4.5 GiB of KV).
    gpu64 = SystemMemory(64 * GIB, (GpuInfo("A", 64 * GIB),))
    assert assess(e120.memory_needed_bytes(8192), gpu64).verdict == Verdict.FITS
    big = assess(e120.memory_needed_bytes(131072), gpu64)
    assert big.verdict == Verdict.WONT_FIT and "RAM" in big.explanation
    assert parse_nvidia_smi("A, 1024\nB, 2048\n")[1].total_bytes == 2048 * 1024 * 1024


def test_stale_manifest_file_change_shows_unverified(make_manager, tmp_path):
    m = make_manager()
    assert m.download_blocking(REPO).state == JobState.DONE
    folder = tmp_path / "models" / "gpt-oss-20b"
    p = folder / "tokenizer.json"
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    assert inspect_model_dir(folder).state == ModelState.UNVERIFIED
    assert m.verify(folder).state == ModelState.READY        # the bytes still match: verified again


def test_progress_wording():
    from app.models.panel_text import progress_text
    from app.models.units import format_bytes, format_duration

    assert format_bytes(13_761_316_904) == "13.8 GB" and format_bytes(999) == "999 B"
    assert format_duration(45) == "45 s" and format_duration(8 * 60 + 10) == "8 min"
    assert format_duration(3600 + 5 * 60) == "1 h 5 min" and format_duration(None) == ""
    assert progress_text(1_200_000_000, 13_800_000_000, 25_000_000, 504) == \
        "1.2 GB of 13.8 GB · 25.0 MB/s · 8 min left"
    assert progress_text(0, 100, 0.0, None) == "0 B of 100 B"


def test_gpu_probe_reads_nvidia_smi_or_reports_unknown(tmp_path, monkeypatch):
    from app.models.fit import probe_gpus, probe_system

    monkeypatch.setenv("PATH", str(tmp_path))                       # no nvidia-smi: GPU unknown
    assert probe_gpus() is None
    assert probe_system().gpus is None
    e20 = entry_for("openai/gpt-oss-20b")
    assert assess(e20.memory_needed_bytes(8192), SystemMemory(64 * GIB, None)).verdict == Verdict.CPU_ONLY
    # The line an H200's nvidia-smi printed for this query (device run, 2026-11-26).
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 143771'\n")
    smi.chmod(0o755)
    [gpu] = probe_gpus()
    assert gpu.name == "NVIDIA H200" and gpu.total_bytes == 143771 * 1024 * 1024


def test_the_memory_probe_runs_off_the_constructing_thread(tmp_path, monkeypatch):
    """nvidia-smi can take seconds: the manager probes on its own thread, and `system` waits for that."""
    import threading
    import time

    release = threading.Event()
    seen: list[str] = []

    def slow_probe(**_kw) -> SystemMemory:
        seen.append(threading.current_thread().name)
        release.wait(5)
        return SystemMemory(64 * GIB, (GpuInfo("Probe GPU", 24 * GIB),))

    monkeypatch.setattr(manager_mod, "probe_system", slow_probe)
    start = time.monotonic()
    m = manager_mod.ModelManager(tmp_path / "models")
    assert time.monotonic() - start < 1.0                       # construction did not wait for the probe
    try:
        threading.Timer(0.2, release.set).start()
        assert m.system.best_gpu == GpuInfo("Probe GPU", 24 * GIB)   # waited for the probe's answer
        assert seen == ["probe-system"] and threading.current_thread().name not in seen
        assert m.system is m.system                              # probed once
    finally:
        release.set()
        m.close()


def test_a_failed_memory_probe_leaves_the_gpu_unknown(tmp_path, monkeypatch):
    calls: list[bool] = []

    def probe(*, gpus: bool = True) -> SystemMemory:
        calls.append(gpus)
        if gpus:
            raise OSError("psutil broke")
        return SystemMemory(8 * GIB, None)

    monkeypatch.setattr(manager_mod, "probe_system", probe)
    m = manager_mod.ModelManager(tmp_path / "models")
    try:
        assert m.system == SystemMemory(8 * GIB, None) and calls[0] is True and calls[-1] is False
    finally:
        m.close()
