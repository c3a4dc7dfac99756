"""`make bench-gpu`: batch-1 speed and memory of the cuda-triton backend on random gpt-oss checkpoints.

gpt-oss-20b shapes: the random checkpoint is written to disk once (engine.bench.checkpoint, HF layout,
13.8 GB) and loaded the way the app loads a model (file mapping -> GPU, tensor by tensor), so load time and
the memory budget (<= 16 GB at an 8k context) are the real ones. gpt-oss-120b shapes (65 GB; more than the
disk of the machine this is meant for): built directly in GPU memory, when it has room.

Per model: decode tok/s (median of 128 single-token steps, each timed to its sampled token, through the
captured CUDA graph), prefill tok/s at 512 and 4096 tokens (engine default chunk of 256, and 2048), time to
first token for a 1k prompt, peak GPU memory. Prints a table with the bar set in issue #10 (SGLang's
published H100 batch-1 figures) and writes JSON to --out.

`python -m engine.bench.gpu --shapes tiny --device cpu --backend cpu-reference` runs the same pipeline on
a tiny in-memory model (a check that the script works, on any machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.checkpoint import Checkpoint, expected_tensors
from engine.config import CheckpointLocation, ModelConfig

log = logging.getLogger(__name__)

GB = 1e9
GOALS = {"gpt-oss-20b": {"decode": 305.0, "ttft_ms": (50, 70)}, "gpt-oss-120b": {"decode": 212.0, "ttft_ms": None}}

SHAPES = {
    "gpt-oss-20b": dict(num_hidden_layers=24, num_experts=32),
    "gpt-oss-120b": dict(num_hidden_layers=36, num_experts=128),
    "tiny": dict(num_hidden_layers=2, num_experts=4, hidden_size=64, intermediate_size=64,
                 num_attention_heads=4, num_key_value_heads=2, experts_per_token=2),
}


def shape_config(name: str) -> ModelConfig:
    base = dict(num_hidden_layers=24, num_experts=32, experts_per_token=4, vocab_size=201088, hidden_size=2880,
                intermediate_size=2880, head_dim=64, num_attention_heads=64, num_key_value_heads=8)
    base.update(SHAPES[name])
    return ModelConfig(**base)


class RandomCheckpoint(Checkpoint):
    """A checkpoint whose tensors are random, made on `device` when asked for (no file at all)."""

    def __init__(self, config: ModelConfig, device: str, seed: int = 0) -> None:  # noqa: D107 - no super().__init__
        self.config = config
        self.location = CheckpointLocation("original", Path("<random>"), Path("<random>"), Path("<random>"))
        self.files = []
        self._specs = {s.name: s for s in expected_tensors(config)}
        self._device = torch.device(device)
        self._gen = torch.Generator(device=self._device).manual_seed(seed)

    def get(self, name: str) -> torch.Tensor:
        spec = self._specs[name]
        shape, dev, g = spec.shape, self._device, self._gen
        if spec.dtype == "U8":
            if name.endswith(".scales"):
                return torch.randint(118, 125, shape, generator=g, device=dev, dtype=torch.uint8)
            return torch.randint(0, 256, shape, generator=g, device=dev, dtype=torch.uint8)
        fan_in = shape[-1] if len(shape) > 1 else 1
        std, mean = (1.0 / fan_in ** 0.5, 0.0) if len(shape) > 1 else (0.1, 0.0)
        if name.endswith(("norm.scale",)):
            std, mean = 0.1, 1.0
        elif name == "embedding.weight":
            std = 1.0
        elif name.endswith("sinks"):
            std, mean = 1.5, 2.0
        elif name.endswith("mlp1_bias"):
            std = 1.0
        return (torch.randn(shape, generator=g, device=dev) * std + mean).to(torch.bfloat16)

    def get_parts(self, name: str) -> list[torch.Tensor]:
        return [self.get(name)]

    def byte_range(self, name: str) -> None:
        return None


@dataclass
class Result:
    model: str
    backend: str
    load_s: float
    decode_tok_s: float
    decode_mean_tok_s: float
    prefill: dict[str, float]
    ttft_1k_ms: float
    peak_gpu_bytes: int
    used_gpu_bytes: int
    context: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ids(n: int, vocab: int, seed: int) -> list[int]:
    return torch.randint(0, min(vocab, 200_000), (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def measure(model: Any, name: str, context: int, steps: int, load_s: float, prefill_lengths: tuple[int, ...],
            ttft_len: int) -> Result:
    from engine.generate import generate
    from engine.sampling import Sampler

    dev = model.device
    cfg = model.config
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    cache = model.backend.new_cache(cfg, context)
    greedy = Sampler(0.0)

    def run(ids: list[int], new: int, chunk: int = 256):  # noqa: ANN202
        cache.reset()
        gen = generate(model, cache, ids, max_new_tokens=new, sampler=greedy, stop_tokens=(), prefill_chunk=chunk)
        out = list(gen)
        return gen.result, out

    log.info("%s: warm-up (kernel compilation, CUDA graph capture)", name)
    run(_ids(min(300, context // 4), cfg.vocab_size, 1), 8)
    # decode: each step timed to its sampled token
    cache.reset()
    model(torch.tensor(_ids(min(256, context // 4), cfg.vocab_size, 2)), cache, last_only=True)
    step = torch.tensor([7], device=dev)
    times = []
    warm = min(16, steps)
    for i in range(steps + warm):
        t0 = time.perf_counter()
        tok = int(model(step, cache)[-1].argmax())
        dt = time.perf_counter() - t0
        step.fill_(tok)
        if i >= warm:
            times.append(dt)
    prefill: dict[str, float] = {}
    for n in prefill_lengths:
        if n + 1 > context:
            continue
        for chunk in (256, 2048):
            r, _ = run(_ids(n, cfg.vocab_size, 3), 1, chunk)
            prefill[f"{n}@{chunk}"] = r.prefill_tokens_per_s
    ttfts = [run(_ids(ttft_len, cfg.vocab_size, 4 + k), 1)[0].time_to_first_token_s for k in range(3 if steps > 8 else 1)]
    peak = int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else 0
    used = 0
    if dev.type == "cuda":
        free, total = torch.cuda.mem_get_info(dev)
        used = int(total - free)
    med = statistics.median(times)
    return Result(name, model.backend.name, load_s, 1.0 / med, len(times) / sum(times), prefill,
                  1e3 * statistics.median(ttfts), peak, used, context)


def _load_20b_from_disk(cache_dir: Path | None, backend: Any) -> tuple[Any, float, float]:
    from engine.bench.checkpoint import ensure_checkpoint
    from engine.model import Transformer

    root, write_s = ensure_checkpoint(cache_dir)
    t0 = time.perf_counter()
    model = Transformer.from_checkpoint(root, backend=backend)
    _sync(backend.device)
    return model, time.perf_counter() - t0, write_s


def _build_in_memory(name: str, backend: Any) -> tuple[Any, float]:
    from engine.model import Transformer

    t0 = time.perf_counter()
    model = Transformer.from_checkpoint(RandomCheckpoint(shape_config(name), str(backend.device)), backend=backend)
    _sync(backend.device)
    return model, time.perf_counter() - t0


def _table(results: list[Result]) -> str:
    lines = [f"{'model':<14}{'backend':<13}{'decode tok/s':>13}{'goal':>6}{'prefill 512':>12}{'prefill 4k':>11}"
             f"{'(chunk 2048)':>13}{'TTFT 1k ms':>11}{'goal':>8}{'peak GB':>9}{'used GB':>9}{'load s':>8}"]
    for r in results:
        goal = GOALS.get(r.model, {})
        ttft_goal = goal.get("ttft_ms")
        lines.append(
            f"{r.model:<14}{r.backend:<13}{r.decode_tok_s:>13.1f}{goal.get('decode', 0):>6.0f}"
            f"{r.prefill.get('512@256', 0):>12.0f}{r.prefill.get('4096@256', 0):>11.0f}"
            f"{r.prefill.get('4096@2048', 0):>13.0f}{r.ttft_1k_ms:>11.1f}"
            f"{(f'{ttft_goal[0]}-{ttft_goal[1]}' if ttft_goal else '-'):>8}"
            f"{r.peak_gpu_bytes / GB:>9.2f}{r.used_gpu_bytes / GB:>9.2f}{r.load_s:>8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.bench.gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--backend", default="cuda-triton")
    p.add_argument("--shapes", default="gpt-oss-20b,gpt-oss-120b", help="comma-separated: gpt-oss-20b, gpt-oss-120b, tiny")
    p.add_argument("--context", type=int, default=8192, help="KV cache size (the 16 GB budget is for 8192)")
    p.add_argument("--steps", type=int, default=128, help="timed decode steps (median reported)")
    p.add_argument("--in-memory", action="store_true", help="build 20b in GPU memory too (no checkpoint on disk)")
    p.add_argument("--cache-dir", type=Path, default=None, help="where the random 20b checkpoint is written")
    p.add_argument("--out", type=Path, default=Path(".bench"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from engine.backends import select

    choice = select(args.device, args.backend)
    if choice.fallback_reason:
        print(f"error: {choice.fallback_reason}", file=sys.stderr)
        return 2
    backend = choice.backend
    torch.set_grad_enabled(False)
    results: list[Result] = []
    extra: dict[str, Any] = {"torch": torch.__version__, "device": str(backend.device)}
    if backend.device.type == "cuda":
        extra["gpu"] = torch.cuda.get_device_name(backend.device)
        import triton

        extra["triton"] = triton.__version__
    for name in [s.strip() for s in args.shapes.split(",") if s.strip()]:
        cfg = shape_config(name)
        small = name == "tiny"
        if backend.device.type == "cuda":
            free = torch.cuda.mem_get_info(backend.device)[0]
            if cfg.memory_needed_bytes(args.context) * 1.1 > free:
                log.warning("%s skipped: needs %.1f GB, %.1f GB free", name, cfg.memory_needed_bytes(args.context) / GB,
                            free / GB)
                extra[f"{name}_skipped"] = "not enough GPU memory"
                continue
        if name == "gpt-oss-20b" and not args.in_memory:
            model, load_s, write_s = _load_20b_from_disk(args.cache_dir, backend)
            extra["checkpoint_write_s"] = write_s
        else:
            model, load_s = _build_in_memory(name, backend)
        log.info("%s loaded in %.1f s", name, load_s)
        r = measure(model, name, min(args.context, 512) if small else args.context, 4 if small else args.steps,
                    load_s, (32, 64) if small else (512, 4096), 48 if small else 1024)
        results.append(r)
        print(_table([r]), flush=True)
        del model
        if backend.device.type == "cuda":
            torch.cuda.empty_cache()
    print("\n" + _table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"bench-gpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"results": [r.__dict__ for r in results], **extra}, indent=2))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
