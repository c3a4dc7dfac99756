"""`make bench-peer` pieces: the summary/ratio arithmetic, the alternating order, the torch-free llama.cpp
child, and (slow, when llama.cpp's source is present) that the GGUF llama.cpp runs holds exactly the weights
Lantern runs, then one tiny end-to-end A/B run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.bench.peer import (
    PEER_VENV,
    REPO_ROOT,
    SMALL,
    ISA_ENV,
    PeerError,
    check_isa,
    default_llama_src,
    engine_files,
    ensure_gguf,
    gguf_path_for,
    isolate_page_cache,
    run_order,
    summarize,
    table,
)

GiB = 1024**3


def _run(load: float, prefill: float, steps: list[float], peak_gib: float) -> dict:
    return {"load_s": load, "prefill_tok_s": prefill, "decode_step_s": steps,
            "decode_tok_s_median": 1 / sorted(steps)[len(steps) // 2], "decode_tok_s_mean": len(steps) / sum(steps),
            "peak_rss": int(peak_gib * GiB), "peak_anon": GiB, "peak_file": 2 * GiB,
            "mem_after_load": {"RssAnon": GiB}, "ttft_first": {"wall_s": 4.0}, "ttft_warm": {"wall_s": 2.0},
            "prefill": {"cpu_share": 0.9}, "decode": {"cpu_share": 0.8}}


def _row(rows: list[dict], label: str) -> dict:
    return next(r for r in rows if r["measure"] == label)


def test_summary_takes_medians_and_ratios_lantern_over_llama() -> None:
    lantern = [_run(2.0, 40.0, [0.1, 0.1, 0.1], 10.0), _run(4.0, 60.0, [0.1, 0.1, 0.1], 12.0),
               _run(3.0, 50.0, [0.1, 0.1, 0.1], 11.0)]
    llama = [_run(30.0, 20.0, [0.125, 0.125, 0.125], 22.0)]
    rows = summarize(lantern, llama, bandwidth_Bps=40e9, traffic_bytes=4_000_000_000)
    load = _row(rows, "load")
    assert load["lantern"] == 3.0 and load["llama_cpp"] == 30.0 and load["ratio"] == pytest.approx(0.1)
    prefill = _row(rows, "prefill 512")
    assert prefill["ratio"] == pytest.approx(2.5) and prefill["better"] == "higher"
    dec = _row(rows, "decode 128, median step")
    assert dec["lantern"] == pytest.approx(10.0) and dec["ratio"] == pytest.approx(1.25)
    share = _row(rows, "decode share of read bandwidth")  # 4 GB/token * 10 tok/s / 40 GB/s
    assert share["lantern"] == pytest.approx(100.0) and share["llama_cpp"] == pytest.approx(80.0)
    assert _row(rows, "peak RSS (VmHWM)")["ratio"] == pytest.approx(0.5)
    text = table(rows)
    assert "Lantern/llama.cpp" in text and "2.50x" in text and "0.10x" in text


def test_summary_survives_a_missing_measure() -> None:
    a = _run(1.0, 10.0, [0.5], 1.0)
    b = _run(1.0, 10.0, [0.5], 1.0)
    del b["ttft_warm"]
    rows = summarize([a], [b])
    warm = _row(rows, "TTFT 1k, warm")
    assert warm["lantern"] == 4.0 / 2 and warm["llama_cpp"] is None and warm["ratio"] is None
    assert all(r["measure"] != "decode share of read bandwidth" for r in rows)
    assert "n/a" in table(rows)


def test_avx2_comparison_checks_both_engines() -> None:
    """--isa avx2 forces Lantern's kernels (and torch) to AVX2 and flags a llama.cpp build with AVX-512."""
    assert ISA_ENV["avx2"]["LANTERN_CPU_KERNELS"] == "avx2" and ISA_ENV["native"] == {}
    lantern = {"engine": "lantern", "result": {"kernels": {"backend": "cpu-avx2"}}}
    fair = {"engine": "llama", "result": {"system_info": "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | FMA = 1 | OPENMP = 1 |"}}
    native = {"engine": "llama", "result": {"system_info": "CPU : AVX2 = 1 | AVX512 = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 |"}}
    assert check_isa("avx2", [lantern, fair]) == []
    problems = check_isa("avx2", [lantern, native])
    assert len(problems) == 1 and "AMX_INT8, AVX512, AVX512_BF16" in problems[0] and "BENCH_PEER=avx2" in problems[0]
    wrong = {"engine": "lantern", "result": {"kernels": {"backend": "cpu-avx512"}}}
    assert check_isa("avx2", [wrong, fair]) == ["Lantern ran cpu-avx512, not cpu-avx2"]
    assert check_isa("native", [wrong, native]) == []


def test_runs_alternate() -> None:
    assert run_order(2, "lantern") == ["lantern", "llama", "lantern", "llama"]
    assert run_order(1, "llama") == ["llama", "lantern"]


def test_page_cache_isolation_drops_the_other_engine_and_reads_this_one(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a Lantern run the GGUF leaves the page cache and every shard is read; before llama.cpp, the reverse."""
    import os

    model = tmp_path / "ckpt"
    (model / "original").mkdir(parents=True)
    shards = [model / "model-00000-of-00002.safetensors", model / "original" / "model.safetensors"]
    for i, f in enumerate(shards):
        f.write_bytes(bytes([i]) * (3 << 20))
    (model / "config.json").write_text("{}")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"G" * (5 << 20))
    dropped: list[str] = []
    real_fadvise = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        dropped.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fadvise(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    files = engine_files(model, gguf)
    assert sorted(files["lantern"]) == sorted(shards) and files["llama"] == [gguf]
    info = isolate_page_cache("lantern", files)
    assert dropped == [str(gguf)]
    assert info["dropped_bytes"] == 5 << 20 and info["warmed_bytes"] == 2 * (3 << 20)
    dropped.clear()
    info = isolate_page_cache("llama", files)
    assert sorted(dropped) == sorted(str(f) for f in shards)
    assert info["dropped_bytes"] == 2 * (3 << 20) and info["warmed_bytes"] == 5 << 20


def test_gguf_is_reused_and_a_missing_converter_is_a_clear_error(tmp_path: Path) -> None:
    model = tmp_path / "ckpt"
    model.mkdir()
    with pytest.raises(PeerError, match="converter not found"):
        ensure_gguf(model, tmp_path / "no-llama")
    gguf_path_for(model).write_bytes(b"GGUF")
    assert ensure_gguf(model, tmp_path / "no-llama") == (gguf_path_for(model), 0.0)
    venv = tmp_path / "venv"
    src = venv / "src" / "llama_cpp_python-9.9.9" / "vendor" / "llama.cpp"
    assert default_llama_src(venv) is None
    src.mkdir(parents=True)
    (src / "convert_hf_to_gguf.py").write_text("")
    assert default_llama_src(venv) == src


def test_llama_child_imports_without_torch() -> None:
    # The peer venv has llama-cpp-python and numpy, no torch: the child and what it imports must not need it.
    code = ("import sys, engine.bench.peer_child; "
            "bad = [m for m in ('torch', 'PySide6', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---- slow: need the llama-cpp-python source tree (and, for the run, its build) under .venv-peer ----------
LLAMA_SRC = default_llama_src()
needs_src = pytest.mark.skipif(LLAMA_SRC is None, reason="no llama.cpp source under .venv-peer (make bench-peer)")


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from engine.bench.checkpoint import ensure_checkpoint

    assert LLAMA_SRC is not None
    model_dir, _ = ensure_checkpoint(tmp_path_factory.mktemp("peer"), SMALL, seed=3)
    gguf, seconds = ensure_gguf(model_dir, LLAMA_SRC)
    assert seconds > 0
    return model_dir, gguf


@pytest.mark.slow
@needs_src
def test_gguf_holds_exactly_the_checkpoint_weights(small_gguf: tuple[Path, Path]) -> None:
    sys.path.insert(0, str(LLAMA_SRC / "gguf-py"))
    try:
        import gguf
        from gguf.quants import dequantize
    finally:
        sys.path.pop(0)
    from engine.checkpoint import open_checkpoint
    from engine.mxfp4 import dequantize as lantern_dequant

    model_dir, path = small_gguf
    ck = open_checkpoint(model_dir)
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    types = {n: t.tensor_type.name for n, t in tensors.items()}
    assert types["blk.0.ffn_gate_exps.weight"] == "MXFP4" and types["blk.1.ffn_down_exps.weight"] == "MXFP4"
    assert types["token_embd.weight"] == "BF16" and types["output.weight"] == "BF16"
    assert types["blk.0.attn_q.weight"] == "BF16"

    def ours(name: str) -> torch.Tensor:
        return lantern_dequant(ck.get(name + ".blocks"), ck.get(name + ".scales"))   # [E, rows, cols] f32

    def theirs(name: str) -> torch.Tensor:
        t = tensors[name]
        return torch.from_numpy(dequantize(t.data, t.tensor_type).astype("float32"))

    for layer in range(SMALL.layers):
        mlp1 = ours(f"block.{layer}.mlp.mlp1_weight")        # rows interleaved gate, up (spec §3)
        mlp2 = ours(f"block.{layer}.mlp.mlp2_weight")
        assert torch.equal(theirs(f"blk.{layer}.ffn_gate_exps.weight"), mlp1[:, 0::2])
        assert torch.equal(theirs(f"blk.{layer}.ffn_up_exps.weight"), mlp1[:, 1::2])
        assert torch.equal(theirs(f"blk.{layer}.ffn_down_exps.weight"), mlp2)
        # negative control: gate and up are different matrices, so a swap would be caught
        assert not torch.equal(mlp1[:, 0::2], mlp1[:, 1::2])
    emb = tensors["token_embd.weight"]
    raw = torch.from_numpy(emb.data.view("uint16").astype("int32")).to(torch.int16).view(torch.bfloat16)
    assert torch.equal(raw.reshape(ck.get("embedding.weight").shape), ck.get("embedding.weight"))


@pytest.mark.slow
@needs_src
@pytest.mark.skipif(not (PEER_VENV / ".installed-stamp").exists(), reason="llama-cpp-python not built (make bench-peer)")
def test_small_ab_run_end_to_end(small_gguf: tuple[Path, Path], tmp_path: Path) -> None:
    model_dir, gguf = small_gguf
    cmd = [sys.executable, "-m", "engine.bench.peer", "--model-dir", str(model_dir), "--gguf", str(gguf),
           "--pairs", "1", "--prompt-len", "32", "--decode-tokens", "8", "--ttft-len", "64", "--context", "256",
           "--threads", "1", "--no-bandwidth", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "peer-latest.json").read_text())
    assert [r["engine"] for r in result["runs"]] == ["lantern", "llama"]
    llama = result["runs"][1]["result"]
    assert llama["prefill_tok_s"] > 0 and len(llama["decode_step_s"]) == 8 and llama["peak_rss"] > 0
    assert "Lantern/llama.cpp" in proc.stdout


@pytest.mark.slow
@needs_src
@pytest.mark.skipif(not (PEER_VENV / ".installed-stamp").exists(), reason="llama-cpp-python not built (make bench-peer)")
def test_llama_cpp_computes_the_same_model(small_gguf: tuple[Path, Path], tmp_path: Path) -> None:
    """The comparison is only fair if llama.cpp runs the same network: its logits on the GGUF must match
    Lantern's on the checkpoint up to rounding. The two round differently (llama.cpp keeps activations in
    f32 between its bf16 matmuls), so a near-tie in the top-2-of-4 routing can pick another expert at an
    odd position; the bound is on most positions, with a shifted-by-one negative control."""
    import numpy as np

    from engine.model import Transformer

    model_dir, gguf = small_gguf
    gen = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 199998, (40,), generator=gen)        # [T]
    npy = tmp_path / "llama.npy"
    cfg = {"mode": "logits", "gguf": str(gguf), "tokens": tokens.tolist(), "out_npy": str(npy), "threads": 1}
    proc = subprocess.run([str(PEER_VENV / "bin" / "python"), "-m", "engine.bench.peer_child", json.dumps(cfg)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = torch.from_numpy(np.load(npy))                         # [T, V] f32
    model = Transformer.from_checkpoint(model_dir)
    ours = model(tokens)                                            # [T, V] f32
    assert theirs.shape == ours.shape
    scale = ours.std(dim=-1, keepdim=True)
    rel = ((theirs - ours).abs() / scale).amax(dim=-1)              # per-position max error in units of std
    agree = (theirs.argmax(-1) == ours.argmax(-1)).float().mean()
    assert rel.median() < 0.12 and (rel < 0.2).float().mean() >= 0.9, rel
    assert agree >= 0.85, agree
    # negative control: shifting the positions by one makes the comparison fail
    assert ((theirs[1:] - ours[:-1]).abs() / scale[:-1]).amax(dim=-1).max() > 0.5
