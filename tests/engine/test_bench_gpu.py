"""engine.bench.gpu's pipeline on a tiny in-memory model (the real run needs an NVIDIA GPU: make bench-gpu)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.bench import gpu
from engine.checkpoint import expected_tensors


def test_random_checkpoint_has_every_tensor_with_its_shape() -> None:
    cfg = gpu.shape_config("tiny")
    ck = gpu.RandomCheckpoint(cfg, "cpu")
    for spec in expected_tensors(cfg):
        t = ck.get(spec.name)
        assert tuple(t.shape) == spec.shape and t.dtype == (torch.uint8 if spec.dtype == "U8" else torch.bfloat16)
    assert gpu.shape_config("gpt-oss-120b").num_experts == 128


def test_bench_pipeline_runs_and_writes_json(tmp_path: Path) -> None:
    rc = gpu.main(["--shapes", "tiny", "--device", "cpu", "--backend", "cpu-reference", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads(next(tmp_path.glob("bench-gpu-*.json")).read_text())
    (r,) = data["results"]
    assert r["model"] == "tiny" and r["backend"] == "cpu-reference"
    assert r["decode_tok_s"] > 0 and r["ttft_1k_ms"] > 0 and set(r["prefill"]) == {"32@256", "32@2048", "64@256",
                                                                                   "64@2048"}
