"""Measurements for `make bench` (one model run in a child process, bandwidth in the parent)."""

from __future__ import annotations

import json
import logging
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GiB = 1024**3


# ---- memory -----------------------------------------------------------------------------------------
def proc_status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile from /proc/self/status in bytes (Linux; empty elsewhere)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


class MemorySampler:
    """Background sampler of anonymous / file-backed resident memory (peaks of each)."""

    def __init__(self, period_s: float = 0.05) -> None:
        self.period_s = period_s
        self.peak_anon = 0
        self.peak_file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mem-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period_s)

    def sample(self) -> None:
        s = proc_status()
        self.peak_anon = max(self.peak_anon, s.get("RssAnon", 0))
        self.peak_file = max(self.peak_file, s.get("RssFile", 0) + s.get("RssShmem", 0))

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# ---- CPU accounting (the bench machine may be shared) ----------------------------------------------------
def cpu_snapshot() -> tuple[float, float]:
    """(process CPU seconds, seconds its threads sat runnable but not running), Linux schedstat."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    wait_ns = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    wait_ns += int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    except OSError:
        pass
    return r.ru_utime + r.ru_stime, wait_ns / 1e9


class Phase:
    """Wall time, CPU time and run-queue wait of one measured phase."""

    def __init__(self) -> None:
        self.wall_s = self.cpu_s = self.wait_s = 0.0

    def __enter__(self) -> Phase:
        self._cpu0, self._wait0 = cpu_snapshot()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s += time.perf_counter() - self._t0
        cpu, wait = cpu_snapshot()
        self.cpu_s += cpu - self._cpu0
        self.wait_s += wait - self._wait0

    def as_dict(self, threads: int) -> dict[str, float]:
        return {"wall_s": self.wall_s, "cpu_s": self.cpu_s, "runqueue_wait_s": self.wait_s,
                "cpu_share": self.cpu_s / max(1e-9, self.wall_s * threads)}


# ---- traffic model ------------------------------------------------------------------------------------
def bytes_per_decoded_token(cfg: Any, context: int) -> dict[str, int]:
    """Bytes a decode step must read: weights it touches (4 experts per layer) plus the KV cache."""
    h, e, i = cfg.hidden_size, cfg.num_experts, cfg.intermediate_size
    k = cfg.experts_per_token
    qkv = cfg.qkv_width
    layers = cfg.num_hidden_layers
    attn = (qkv * h + qkv + h * cfg.q_width + h + 2 * h + cfg.num_attention_heads) * 2
    router = (e * h + e) * 2
    expert = (2 * i * (h // 32) * 17 + 2 * i * 2) + (h * (i // 32) * 17 + h * 2)  # blocks+scales+bias
    kv_row = 2 * cfg.num_key_value_heads * cfg.head_dim * 2                        # K and V, bf16
    kv = sum(kv_row * (min(context, cfg.sliding_window) if cfg.is_sliding(n) else context) for n in range(layers))
    unembed = cfg.vocab_size * h * 2
    return {
        "attention_weights": layers * attn,
        "router": layers * router,
        "experts": layers * k * expert,
        "unembedding": unembed,
        "embedding_row": h * 2,
        "kv_cache": kv,
        "total": layers * (attn + router + k * expert) + unembed + h * 2 + kv,
    }


# ---- the child: load, prefill, decode --------------------------------------------------------------------
@dataclass
class ChildConfig:
    model_dir: str
    threads: int = 2
    prompt_len: int = 512
    decode_tokens: int = 128
    ttft_len: int = 1024
    max_context: int = 8192
    components: bool = True
    prefill_probe_tokens: int = 128   # tokens of the prefill-shaped component probe (GFLOP/s vs the FMA peak)
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _timed(fn: Any, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def component_times(model: Any, repeats: int = 3) -> dict[str, dict[str, float]]:
    """Per-token cost of each decode hot path on the real weights (summed over layers)."""
    import torch

    be = model.backend
    linear, logits_fp32, moe_experts = be.linear, be.logits, be.moe

    cfg = model.config
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(1, cfg.hidden_size, generator=gen).bfloat16()
    o = torch.randn(1, cfg.q_width, generator=gen).bfloat16()
    res: dict[str, dict[str, float]] = {}

    def record(name: str, seconds: float, nbytes: int) -> None:
        res[name] = {"ms_per_token": seconds * 1e3, "bytes": nbytes, "GB_per_s": nbytes / seconds / 1e9}

    t = sum(_timed(lambda L=L: linear(h, L.qkv_w, L.qkv_b), repeats) for L in model.layers)
    record("qkv", t, sum(L.qkv_w.nbytes for L in model.layers))
    t = sum(_timed(lambda L=L: linear(o, L.out_w, L.out_b), repeats) for L in model.layers)
    record("attn_out", t, sum(L.out_w.nbytes for L in model.layers))
    t = sum(_timed(lambda L=L: linear(h, L.gate_w, L.gate_b), repeats) for L in model.layers)
    record("router", t, sum(L.gate_w.nbytes for L in model.layers))
    k = cfg.experts_per_token
    w = torch.full((1, k), 1.0 / k)
    tot, nbytes = 0.0, 0
    for L in model.layers:
        ex = L.experts
        idx = torch.randperm(cfg.num_experts, generator=gen)[:k].view(1, k)
        tot += _timed(lambda: moe_experts(h, idx, w, ex, cfg.swiglu_limit), repeats)
        per = sum(x[0].nbytes for x in (ex.mlp1_blocks, ex.mlp1_scales, ex.mlp1_bias, ex.mlp2_blocks,
                                        ex.mlp2_scales, ex.mlp2_bias))
        nbytes += k * per
    record("experts", tot, nbytes)
    t = _timed(lambda: logits_fp32(h, model.unembedding), repeats)
    record("unembedding", t, model.unembedding.nbytes)
    res["_backend"] = {"native": float(be.name.startswith("cpu-") and be.name != "cpu-reference")}
    return res


def matmul_flops(cfg: Any, tokens: int) -> dict[str, int]:
    """fp32 multiply-adds x 2 of one forward over `tokens` tokens: the expert matmuls (4 experts per token, mlp1
    [2I, D] and mlp2 [D, I]) and the dense projections (qkv, attention out, router), summed over layers."""
    h, i, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    experts = 2 * tokens * cfg.experts_per_token * (2 * i * h + h * i) * layers
    dense = 2 * tokens * (cfg.qkv_width * h + h * cfg.q_width + cfg.num_experts * h) * layers
    return {"experts": experts, "dense": dense}


def prefill_component_times(model: Any, tokens: int, repeats: int = 2) -> dict[str, dict[str, float]]:
    """GFLOP/s of the prefill matmuls on the real weights: every layer's experts for `tokens` tokens routed at
    random (4 of E each, as the model's router would spread them), and its dense projections (qkv, attention
    out, router) for the same tokens. Compared in the table with the FMA peak of the kernels' path."""
    import torch

    be = model.backend                    # the ops the model runs (engine.model's own names are the reference ones)
    linear, moe_experts = be.linear, be.moe

    cfg = model.config
    gen = torch.Generator().manual_seed(1)
    k = cfg.experts_per_token
    h = (torch.randn(tokens, cfg.hidden_size, generator=gen) * 0.5).bfloat16()
    o = (torch.randn(tokens, cfg.q_width, generator=gen) * 0.5).bfloat16()
    w = torch.full((tokens, k), 1.0 / k)
    flops = matmul_flops(cfg, tokens)
    t_exp = t_dense = 0.0
    for L in model.layers:
        idx = torch.rand(tokens, cfg.num_experts, generator=gen).topk(k, dim=-1).indices
        t_exp += _timed(lambda L=L, idx=idx: moe_experts(h, idx, w, L.experts, cfg.swiglu_limit), repeats)
        t_dense += _timed(lambda L=L: (linear(h, L.qkv_w, L.qkv_b), linear(o, L.out_w, L.out_b),
                                       linear(h, L.gate_w, L.gate_b)), repeats)
    return {"experts": {"tokens": tokens, "s": t_exp, "flops": flops["experts"], "GFLOP_per_s": flops["experts"] / t_exp / 1e9},
            "dense": {"tokens": tokens, "s": t_dense, "flops": flops["dense"], "GFLOP_per_s": flops["dense"] / t_dense / 1e9}}


def peak_probe(threads: int) -> dict[str, Any]:
    """The FMA peak of the kernels' path on `threads` threads (what the prefill GFLOP/s are read against)."""
    from engine import kernels

    st = kernels.status()
    if not st.available:
        return {"backend": st.backend, "reason": st.reason}
    return {"backend": st.backend, "reason": st.reason, "threads": threads,
            "fma_GFLOP_per_s": kernels.fma_peak(num_threads=threads) / 1e9,
            "fma_1t_GFLOP_per_s": kernels.fma_peak(num_threads=1) / 1e9}


def run_child(cc: ChildConfig) -> dict[str, Any]:
    import torch

    torch.set_num_threads(cc.threads)
    from engine import kernels
    from engine.kv_cache import KVCache
    from engine.model import Transformer

    out: dict[str, Any] = {"threads": torch.get_num_threads(), "kernels": kernels.status().__dict__}
    gen = torch.Generator().manual_seed(cc.seed)
    with MemorySampler() as mem:
        t0 = time.perf_counter()
        model = Transformer.from_checkpoint(cc.model_dir)
        cache = KVCache(model.config, cc.max_context)
        out["load_s"] = time.perf_counter() - t0
        out["kv_cache_bytes"] = cache.nbytes
        out["mem_after_load"] = proc_status()
        vocab = min(199998, model.config.vocab_size)  # ordinary (non-special) token ids

        def prefill(n: int, key: str) -> torch.Tensor:
            cache.reset()
            toks = torch.randint(0, vocab, (n,), generator=gen)
            with Phase() as ph:
                logits = model(toks, cache, last_only=True)
            out[key] = ph.as_dict(cc.threads)
            log.info("%s (%d tokens): %.2f s wall, %.0f %% of %d cores", key, n, ph.wall_s,
                     100 * out[key]["cpu_share"], cc.threads)
            return logits

        # 1. Time to first token for a 1k prompt straight after loading (weights page in from the cache).
        if cc.ttft_len:
            prefill(cc.ttft_len, "ttft_first")
        # 2. Prefill 512 (warm).
        logits = prefill(cc.prompt_len, "prefill")
        out["prefill_tok_s"] = cc.prompt_len / out["prefill"]["wall_s"]
        # 3. Decode after that prompt, batch 1, greedy.
        steps = []
        tok = int(logits[-1].argmax())
        with Phase() as ph:
            for _ in range(cc.decode_tokens):
                t = time.perf_counter()
                logits = model(torch.tensor([tok]), cache, last_only=True)
                tok = int(logits[-1].argmax())
                steps.append(time.perf_counter() - t)
        out["decode"] = ph.as_dict(cc.threads)
        out["decode_step_s"] = steps
        out["decode_tok_s_median"] = 1.0 / statistics.median(steps)
        out["decode_tok_s_mean"] = len(steps) / sum(steps)
        out["decode_context_mean"] = cc.prompt_len + cc.decode_tokens / 2
        log.info("decode: median %.2f tok/s, %.0f %% of cores", out["decode_tok_s_median"],
                 100 * out["decode"]["cpu_share"])
        # Streaming read of real weight memory (the unembedding, 1.16 GB) right after decoding: the rate
        # the same pages give at this moment, for comparison with the decode traffic.
        if kernels.available():
            out["weights_read_GBps"] = kernels.read_bandwidth(model.unembedding, num_threads=cc.threads) / 1e9
        # 4. TTFT 1k again, now warm.
        if cc.ttft_len:
            prefill(cc.ttft_len, "ttft_warm")
        if cc.components:
            out["components"] = component_times(model)
            if cc.prefill_probe_tokens:
                out["prefill_components"] = prefill_component_times(model, cc.prefill_probe_tokens)
            out["peak"] = peak_probe(cc.threads)
        out["mem_end"] = proc_status()
    out["peak_rss"] = out["mem_end"].get("VmHWM", 0)
    out["peak_anon"] = mem.peak_anon
    out["peak_file"] = mem.peak_file
    out["traffic"] = bytes_per_decoded_token(model.config, int(out["decode_context_mean"]))
    return out


# ---- parent -------------------------------------------------------------------------------------------
def read_bandwidth(threads: int, gib: float = 2.0) -> dict[str, float]:
    import torch

    from engine import kernels

    buf = torch.ones(int(gib * GiB), dtype=torch.uint8)
    res = {}
    for th in sorted({1, threads}):
        if kernels.available():
            res[f"native_{th}t_GBps"] = kernels.read_bandwidth(buf, num_threads=th, repeats=3) / 1e9
    torch.set_num_threads(threads)
    f = buf.view(torch.float32)
    best = min(_timed(lambda: f.sum(), 1) for _ in range(3))
    res[f"torch_sum_{threads}t_GBps"] = buf.numel() / best / 1e9
    res["best_GBps"] = max(res.values())
    del buf
    return res


def save(result: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = out_dir / f"bench-{stamp}.json"
    text = json.dumps(result, indent=2, default=str)
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    return path


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def loadavg() -> list[float]:
    try:
        return list(os.getloadavg())
    except OSError:
        return []
