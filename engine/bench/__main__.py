"""`python -m engine.bench [--threads 2] [--out .bench]`: the `make bench` entry point.

Writes (once) a random gpt-oss-20b-shaped checkpoint under the user cache, runs the model in a child
process (so its peak memory is its own), measures read bandwidth in this process afterwards, prints a
table next to the goals and saves JSON under `.bench/`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine.bench.checkpoint import default_cache_dir, ensure_checkpoint
from engine.bench.run import GiB, ChildConfig, cpu_name, loadavg, read_bandwidth, run_child, save

log = logging.getLogger("engine.bench")

# Reference numbers for llama.cpp on this machine kind (2 Zen 4 cores, ~35 GB/s), from the issue.
LLAMA_CPP = {"decode_tok_s": 8.5, "prefill_tok_s": 20.0, "load_s": (21.0, 38.0), "peak_rss_gib": 22.0}
GOALS = {"decode_vs_llama": 0.95, "bandwidth_share": 0.90, "prefill_vs_llama": 2.0, "peak_rss_gib": 14.0,
         "load_s": 5.0}


def _child_main(args: argparse.Namespace) -> int:
    cc = ChildConfig(**json.loads(args.child))
    result = run_child(cc)
    sys.stdout.write("\n@@RESULT@@" + json.dumps(result) + "\n")
    return 0


def _fmt_goal(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "not met")


def table(r: dict[str, Any]) -> str:
    m = r["model"]
    bw = r["bandwidth"]["best_GBps"] * 1e9
    traffic = m["traffic"]["total"]
    dec = m["decode_tok_s_median"]
    share = traffic * dec / bw
    wbw = m.get("weights_read_GBps", 0.0) * 1e9
    share_w = traffic * dec / wbw if wbw else 0.0
    peak = m["peak_rss"] / GiB
    rows = [
        ("load (from_checkpoint + 8k KV cache)", f"{m['load_s']:.2f} s", f"<= {GOALS['load_s']:.0f} s warm",
         _fmt_goal(m["load_s"] <= GOALS["load_s"])),
        (f"TTFT {r['config']['ttft_len']} tokens, first forward after load", f"{m.get('ttft_first', {}).get('wall_s', 0):.1f} s", "", ""),
        (f"TTFT {r['config']['ttft_len']} tokens, warm", f"{m.get('ttft_warm', {}).get('wall_s', 0):.1f} s", "", ""),
        (f"prefill {r['config']['prompt_len']} tokens", f"{m['prefill_tok_s']:.1f} tok/s",
         f">= {GOALS['prefill_vs_llama'] * LLAMA_CPP['prefill_tok_s']:.0f} (2x llama.cpp)",
         _fmt_goal(m["prefill_tok_s"] >= GOALS["prefill_vs_llama"] * LLAMA_CPP["prefill_tok_s"])),
        (f"decode {r['config']['decode_tokens']} tokens, median", f"{dec:.2f} tok/s",
         f">= {GOALS['decode_vs_llama'] * LLAMA_CPP['decode_tok_s']:.2f} (0.95x llama.cpp)",
         _fmt_goal(dec >= GOALS["decode_vs_llama"] * LLAMA_CPP["decode_tok_s"])),
        ("decode mean", f"{m['decode_tok_s_mean']:.2f} tok/s", "", ""),
        ("CPU share obtained: prefill / decode", f"{m['prefill']['cpu_share'] * 100:.0f} / {m['decode']['cpu_share'] * 100:.0f} %",
         "(100 % = all threads busy)", ""),
        ("run-queue wait: prefill / decode", f"{m['prefill']['runqueue_wait_s']:.1f} / {m['decode']['runqueue_wait_s']:.1f} s",
         "(time runnable, not running)", ""),
        ("bytes read per decoded token", f"{traffic / 1e9:.2f} GB", "", ""),
        ("read bandwidth (best of native / torch)", f"{bw / 1e9:.1f} GB/s", "", ""),
        ("read bandwidth of the weights' pages, right after decode", f"{wbw / 1e9:.1f} GB/s", "", ""),
        ("decode share of bandwidth (vs best probe)", f"{share * 100:.0f} %", f">= {GOALS['bandwidth_share'] * 100:.0f} %",
         _fmt_goal(share >= GOALS["bandwidth_share"])),
        ("decode share of bandwidth (vs weights probe)", f"{share_w * 100:.0f} %", "", ""),
        ("peak RSS (VmHWM)", f"{peak:.2f} GiB", f"<= {GOALS['peak_rss_gib']:.0f} GiB",
         _fmt_goal(peak <= GOALS["peak_rss_gib"])),
        ("  peak anonymous / file-backed (sampled)", f"{m['peak_anon'] / GiB:.2f} / {m['peak_file'] / GiB:.2f} GiB", "", ""),
        ("KV cache (8k context)", f"{m['kv_cache_bytes'] / GiB:.2f} GiB", "", ""),
    ]
    probe = m.get("peak") or {}
    fma = probe.get("fma_GFLOP_per_s")
    for name, label in (("experts", "expert matmuls"), ("dense", "dense projections (qkv, out, router)")):
        c = (m.get("prefill_components") or {}).get(name)
        if c:
            share = f"{100 * c['GFLOP_per_s'] / fma:.0f} % of the FMA peak" if fma else ""
            rows.append((f"{label}, prefill {c['tokens']} tokens", f"{c['GFLOP_per_s']:.1f} GFLOP/s", share, ""))
    if fma:
        rows.append((f"peak fp32 FMA (probe, {probe['backend']}, {probe['threads']} / 1 threads)",
                     f"{fma:.1f} / {probe['fma_1t_GFLOP_per_s']:.1f} GFLOP/s", "", ""))
    w0 = max(len(a) for a, *_ in rows)
    w1 = max(len(b) for _, b, *_ in rows)
    w2 = max(len(c) for _, _, c, _ in rows)
    kern = m["kernels"]
    lines = [f"cpu: {r['machine']['cpu']}   kernels: {kern['backend']}" + (f" ({kern['reason']})" if kern["reason"] else ""),
             "",
             f"{'measure':<{w0}}  {'value':>{w1}}  {'goal':<{w2}}  status", "-" * (w0 + w1 + w2 + 14)]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c:<{w2}}  {d}" for a, b, c, d in rows]
    comps = m.get("components") or {}
    if comps:
        lines += ["", "decode cost by component (1 token, summed over layers, standalone calls):"]
        for name, c in comps.items():
            if name.startswith("_"):
                continue
            lines.append(f"  {name:<12} {c['ms_per_token']:8.1f} ms  {c['bytes'] / 1e9:6.2f} GB  {c['GB_per_s']:6.1f} GB/s")
    lines += ["", f"backend: {m['kernels']['backend']}" + (f" ({m['kernels']['reason']})" if m['kernels']['reason'] else ""),
              f"threads: {m['threads']}   cpu: {r['machine']['cpu']}   load average before/after: "
              f"{r['machine']['loadavg_before']} / {r['machine']['loadavg_after']}",
              "note: a shared machine gives noisy numbers; the load average shows how busy it was."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.bench", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", type=Path, default=None, help=f"where the random checkpoint lives ({default_cache_dir()})")
    p.add_argument("--model-dir", type=Path, default=None, help="benchmark this checkpoint instead of the random one")
    p.add_argument("--out", type=Path, default=Path(".bench"))
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--ttft-len", type=int, default=1024)
    p.add_argument("--no-components", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.child:
        return _child_main(args)

    if args.model_dir is None:
        t0 = time.perf_counter()
        model_dir, wrote = ensure_checkpoint(args.cache_dir)
        log.info("checkpoint %s (%s)", model_dir, f"written in {wrote:.0f} s" if wrote else "reused")
    else:
        model_dir, wrote = args.model_dir, 0.0
    cc = {"model_dir": str(model_dir), "threads": args.threads, "prompt_len": args.prompt_len,
          "decode_tokens": args.decode_tokens, "ttft_len": args.ttft_len, "components": not args.no_components}
    before = loadavg()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run([sys.executable, "-m", "engine.bench", "--child", json.dumps(cc)], env=env,
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0 or "@@RESULT@@" not in proc.stdout:
        print(proc.stdout, file=sys.stderr)
        print(f"benchmark child failed (exit {proc.returncode})", file=sys.stderr)
        return 1
    model = json.loads(proc.stdout.split("@@RESULT@@", 1)[1])
    after = loadavg()
    bandwidth = read_bandwidth(args.threads)
    result = {
        "config": cc, "checkpoint_write_s": wrote, "model": model, "bandwidth": bandwidth,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "loadavg_before": before, "loadavg_after": after},
        "reference_llama_cpp": LLAMA_CPP, "goals": GOALS,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(table(result))
    path = save(result, args.out)
    print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
