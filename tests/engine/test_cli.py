"""`python -m engine info|logits|generate` as other checks call it, on both layouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.model import Transformer

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_info_same_on_both_layouts(tiny_model_dir: Path) -> None:
    a, b = run("info", "--model", str(tiny_model_dir), "--json"), run("info", "--model",
                                                                      str(tiny_model_dir / "original"), "--json")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ia, ib = json.loads(a.stdout), json.loads(b.stdout)
    assert (ia["layout"], ib["layout"]) == ("huggingface", "original")
    for key in ("layers", "experts", "experts_per_token", "params_total", "params_active", "memory_needed_bytes"):
        assert ia[key] == ib[key], key
    assert ia["layers"] == 2 and ia["experts"] == 4
    weights = sum(p.stat().st_size for p in tiny_model_dir.glob("*.safetensors"))
    assert ia["bytes_on_disk"] == weights
    text = run("info", "--model", str(tiny_model_dir))
    assert text.returncode == 0 and "parameters:" in text.stdout and "memory needed:" in text.stdout


def test_logits_same_on_both_layouts_and_equal_to_forward(tiny_model_dir: Path, tmp_path: Path) -> None:
    outs = []
    for i, folder in enumerate((tiny_model_dir, tiny_model_dir / "original")):
        out = tmp_path / f"l{i}.npy"
        r = run("logits", "--model", str(folder), "--tokens", "1,2,3,200005,17", "--out", str(out))
        assert r.returncode == 0, r.stderr
        outs.append(np.load(out))
    assert outs[0].dtype == np.float32 and outs[0].shape == (5, 201088)
    assert np.array_equal(outs[0], outs[1])
    direct = Transformer.from_checkpoint(tiny_model_dir)(torch.tensor([1, 2, 3, 200005, 17])).numpy()
    assert np.array_equal(outs[0], direct)


def test_generate_same_on_both_layouts(tiny_model_dir: Path) -> None:
    results = []
    for folder in (tiny_model_dir, tiny_model_dir / "original"):
        r = run("generate", "--model", str(folder), "--tokens", "5,6,7", "--max-new-tokens", "6",
                "--temperature", "0.9", "--top-p", "0.9", "--seed", "11", "--json")
        assert r.returncode == 0, r.stderr
        results.append(json.loads(r.stdout))
    assert results[0]["tokens"] == results[1]["tokens"] and len(results[0]["tokens"]) == 6
    usage = results[0]["usage"]
    assert usage["prompt_tokens"] == 3 and usage["completion_tokens"] == 6
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s", "time_to_first_token_s", "peak_memory_bytes"):
        assert usage[key] > 0


@pytest.mark.parametrize("args", [
    ("info", "--model", "{missing}"),
    ("logits", "--model", "{missing}", "--tokens", "1", "--out", "{tmp}/x.npy"),
    ("generate", "--model", "{missing}", "--tokens", "1", "--max-new-tokens", "2", "--temperature", "0"),
    ("generate", "--model", "{model}", "--tokens", "999999", "--max-new-tokens", "2", "--temperature", "0"),
])
def test_user_errors_exit_2_with_one_line(args: tuple[str, ...], tiny_model_dir: Path, tmp_path: Path) -> None:
    fill = {"missing": str(tmp_path / "no-such-model"), "tmp": str(tmp_path), "model": str(tiny_model_dir)}
    r = run(*(a.format(**fill) for a in args))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr
    assert "no-such-model" in lines[0] or "999999" in lines[0]


def test_backend_flag_and_info_json(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.__main__ import main

    r = run("info", "--model", str(tiny_model_dir), "--json", "--device", "cpu", "--backend", "cpu-reference")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["backend"] == "cpu-reference" and info["fallback_reason"] is None
    assert info["backend_label"] == "CPU · pure torch"
    capsys.readouterr()
    if not torch.cuda.is_available():
        assert main(["info", "--model", str(tiny_model_dir), "--json", "--backend", "cuda-triton"]) == 0
        asked = json.loads(capsys.readouterr().out)
        assert asked["device"] == "cpu" and asked["fallback_reason"].startswith("cuda-triton requested but")
    assert main(["info", "--model", str(tiny_model_dir), "--backend", "vulkan"]) == 2
    assert "Unknown backend" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="runs the Triton interpreter (no GPU)")
def test_triton_kernels_on_the_cpu_through_the_cli(tiny_model_dir: Path, tmp_path: Path) -> None:
    import importlib.util

    from engine.backends import select

    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    out = tmp_path / "t.npy"
    r = run("logits", "--model", str(tiny_model_dir / "original"), "--tokens", "1,2,3,200005,17", "--out", str(out),
            "--device", "cpu", "--backend", "cuda-triton")
    assert r.returncode == 0, r.stderr
    model = Transformer.from_checkpoint(tiny_model_dir, backend=select("cpu", "cuda-triton").backend)
    assert np.array_equal(np.load(out), model(torch.tensor([1, 2, 3, 200005, 17])).numpy())


def test_backend_from_the_environment(tiny_model_dir: Path) -> None:
    import os

    r = subprocess.run([sys.executable, "-m", "engine", "generate", "--model", str(tiny_model_dir), "--tokens", "5,6",
                        "--max-new-tokens", "2", "--temperature", "0", "--json"], cwd=REPO, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "LANTERN_BACKEND": "cpu-reference"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["backend"] == "cpu-reference"
