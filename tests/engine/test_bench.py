"""The benchmark's pieces on small shapes: the streamed checkpoint writer produces what the loader expects,
the full-size plan has gpt-oss-20b's exact byte count, and one measurement pass runs end to end."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from engine.bench.checkpoint import Shape20b, ensure_checkpoint, hf_config, plan
from engine.bench.__main__ import table
from engine.bench.run import ChildConfig, bytes_per_decoded_token, matmul_flops, run_child
from engine.checkpoint import open_checkpoint
from engine.config import ModelConfig

SMALL = Shape20b(layers=2, experts=4, experts_per_token=2, hidden=64, intermediate=64, heads=4, kv_heads=2,
                 head_dim=64, vocab=1024, sliding_window=8)


def test_full_size_plan_matches_gpt_oss_20b() -> None:
    cfg = ModelConfig.from_dict(hf_config(Shape20b()))
    total = sum(t.nbytes for t in plan(Shape20b()))
    assert total == cfg.weight_bytes()
    # spec §2.3: the three HF shards of openai/gpt-oss-20b hold 13,761,316,904 bytes including headers
    assert 0 < 13_761_316_904 - total < 200_000


def test_written_checkpoint_opens_with_the_engine_loader(tmp_path: Path) -> None:
    root, seconds = ensure_checkpoint(tmp_path, SMALL, seed=1)
    assert seconds > 0
    index = json.loads((root / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 3
    ckpt = open_checkpoint(root)                     # checks every tensor's name, dtype and shape
    assert ckpt.config.num_experts == SMALL.experts
    blocks = ckpt.get("block.1.mlp.mlp1_weight.blocks")
    assert blocks.dtype == torch.uint8 and blocks.shape == (4, 128, 2, 16)
    scales = ckpt.get("block.0.mlp.mlp2_weight.scales")
    assert int(scales.min()) >= 118 and int(scales.max()) <= 124
    emb = ckpt.get("embedding.weight").float()
    assert 0.8 < emb.std().item() < 1.2 and torch.isfinite(emb).all()
    again, seconds = ensure_checkpoint(tmp_path, SMALL, seed=1)
    assert again == root and seconds == 0.0          # reused, not rewritten


def test_measurement_pass_runs(tmp_path: Path) -> None:
    root, _ = ensure_checkpoint(tmp_path, SMALL, seed=2)
    cc = ChildConfig(model_dir=str(root), threads=1, prompt_len=8, decode_tokens=3, ttft_len=0, max_context=64)
    r = run_child(cc)
    assert r["prefill_tok_s"] > 0 and len(r["decode_step_s"]) == 3
    assert r["peak_rss"] > 0 and r["components"]["experts"]["bytes"] > 0
    assert r["traffic"] == bytes_per_decoded_token(ModelConfig.from_dict(hf_config(SMALL)), 9)
    json.dumps(r)                                    # JSON-serialisable as saved
    assert asdict(cc)["threads"] == 1
    pre = r["prefill_components"]
    assert pre["experts"]["GFLOP_per_s"] > 0 and pre["dense"]["GFLOP_per_s"] > 0
    assert pre["experts"]["flops"] == matmul_flops(ModelConfig.from_dict(hf_config(SMALL)), cc.prefill_probe_tokens)["experts"]
    text = table({"model": r, "bandwidth": {"best_GBps": 10.0}, "config": asdict(cc),
                  "machine": {"cpu": "test cpu", "loadavg_before": [], "loadavg_after": []}})
    assert text.startswith(f"cpu: test cpu   kernels: {r['kernels']['backend']}")
    assert "expert matmuls, prefill 128 tokens" in text and "dense projections" in text
    if r["peak"].get("fma_GFLOP_per_s"):              # the native kernels are built: the FMA peak is probed
        assert r["peak"]["fma_GFLOP_per_s"] > 0 and "% of the FMA peak" in text and "peak fp32 FMA" in text


def test_matmul_flops_of_gpt_oss_20b() -> None:
    cfg = ModelConfig.from_dict(hf_config(Shape20b()))
    f = matmul_flops(cfg, 1)
    assert f["experts"] == 2 * 4 * 3 * 2880 * 2880 * 24          # mlp1 [5760, 2880] + mlp2 [2880, 2880], 4 experts
    assert f["dense"] == 2 * (5120 * 2880 + 2880 * 4096 + 32 * 2880) * 24


def test_component_probes_time_the_model_backends_ops(tmp_path: Path) -> None:
    """The decode and prefill probes must call the ops the model runs (its backend's), not the reference ones
    engine.model and engine.moe still export: otherwise `make bench` reports torch's matmuls as the kernels'."""
    from engine.bench.run import component_times, prefill_component_times
    from engine.model import Transformer

    root, _ = ensure_checkpoint(tmp_path, SMALL, seed=3)
    model = Transformer.from_checkpoint(root)
    calls = {"linear": 0, "moe": 0}
    be = model.backend

    class Counting:
        def __getattr__(self, name: str):  # noqa: ANN204 - a transparent wrapper
            op = getattr(be, name)
            if name not in calls:
                return op

            def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                calls[name] += 1
                return op(*args, **kwargs)
            return counted

    model.backend = Counting()  # type: ignore[assignment]
    prefill_component_times(model, 4, repeats=1)
    layers = model.config.num_hidden_layers
    assert calls == {"linear": 3 * layers, "moe": layers}
    component_times(model, repeats=1)
    assert calls["moe"] == 2 * layers and calls["linear"] > 3 * layers
