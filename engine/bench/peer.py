"""`make bench-peer`: Lantern and llama.cpp on the same random gpt-oss-20b-shaped checkpoint, in one run.

The checkpoint is the one `make bench` writes (engine.bench.checkpoint, HF layout). It is converted once
with llama.cpp's own `convert_hf_to_gguf.py` (taken from the llama-cpp-python source package; experts stay
MXFP4 — the converter repacks the blocks losslessly — the other matrices bf16, norms/biases/router f32 as
the converter always writes them) and the GGUF is cached next to the checkpoint.

Then the two engines run alternately (A B A B ...), each in its own child process so that peak memory is
its own, with the same thread count, context, prompt lengths and greedy decode. The table shows the
medians over the runs of each engine and the ratio Lantern / llama.cpp; the JSON under `.bench/` keeps
every run. The machine may be shared: alternating keeps slow phases from favouring one engine, and the
CPU share each engine obtained is printed next to its speeds.

Page cache: the two engines' files (13.8 GB each at full size) do not both fit in a 24 GiB machine's page
cache, and the kernel's LRU tends to keep the files read earlier and evict the ones faulted in now, so the
engine that runs second would read its weights from disk in the middle of its timed phases. Before each run
the other engine's files are dropped from the page cache (posix_fadvise DONTNEED: clean pages, nothing maps
them between runs) and the running engine's files are read once, so both start from a warm cache of their own
weights and nothing else (`--no-cache-isolation` turns this off).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from engine.bench.checkpoint import Shape20b, default_cache_dir, ensure_checkpoint
from engine.bench.run import GiB, cpu_name, loadavg

log = logging.getLogger("engine.bench.peer")

REPO_ROOT = Path(__file__).resolve().parents[2]
PEER_VENV = REPO_ROOT / ".venv-peer"
# A reduced shape for proving the pipeline quickly (full vocabulary: the tokenizer must convert).
SMALL = Shape20b(layers=2, experts=4, experts_per_token=2, hidden=256, intermediate=256, heads=4, kv_heads=2,
                 head_dim=64)
# The issue's figures for llama.cpp on this checkpoint and machine kind (2 Zen 4 cores, ~35 GB/s).
ISSUE_REFERENCE = {"decode_tok_s_median": 8.5, "decode_tok_s_best": 9.75, "prefill_tok_s": 20.0,
                   "load_s": [21.0, 38.0], "peak_rss_gib": 22.0, "anon_expert_copy_gib": 9.7}


class PeerError(RuntimeError):
    """The llama.cpp side could not be set up or run."""


# ---- page cache -----------------------------------------------------------------------------------------
def drop_from_page_cache(paths: list[Path]) -> int:
    """Ask the kernel to drop `paths` from the page cache; returns their total size (0 where unsupported)."""
    if not hasattr(os, "posix_fadvise"):
        return 0
    total = 0
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


def warm_page_cache(paths: list[Path], chunk: int = 16 << 20) -> tuple[int, float]:
    """Read `paths` once, sequentially (fills the page cache); returns (bytes read, seconds)."""
    t0 = time.perf_counter()
    buf = bytearray(chunk)
    view = memoryview(buf)
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                total += n
    return total, time.perf_counter() - t0


def engine_files(model_dir: Path, gguf: Path) -> dict[str, list[Path]]:
    """The weight files each engine reads."""
    return {"lantern": sorted(model_dir.rglob("*.safetensors")), "llama": [gguf]}


def isolate_page_cache(engine: str, files: dict[str, list[Path]]) -> dict[str, float]:
    """Before `engine` runs: drop the other engine's files from the page cache, warm this engine's."""
    other = "llama" if engine == "lantern" else "lantern"
    dropped = drop_from_page_cache(files[other])
    warmed, seconds = warm_page_cache(files[engine])
    log.info("page cache: dropped %.1f GB of %s files, read %.1f GB of %s files in %.1f s", dropped / 1e9, other,
             warmed / 1e9, engine, seconds)
    return {"dropped_bytes": float(dropped), "warmed_bytes": float(warmed), "warm_s": seconds}


# ---- GGUF conversion -----------------------------------------------------------------------------------
def default_llama_src(venv: Path = PEER_VENV) -> Path | None:
    """The vendored llama.cpp tree of the llama-cpp-python source package unpacked under the peer venv."""
    hits = sorted((venv / "src").glob("llama_cpp_python-*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    return hits[-1].parent if hits else None


def gguf_path_for(model_dir: Path) -> Path:
    return model_dir.parent / f"{model_dir.name}-mxfp4-bf16.gguf"


def ensure_gguf(model_dir: Path, llama_src: Path, python: str = sys.executable) -> tuple[Path, float]:
    """Convert the HF-layout checkpoint once; returns (gguf path, seconds spent converting; 0.0 if reused).

    The converter needs torch, transformers and numpy: Lantern's own venv has them, so it runs there with
    the vendored gguf-py (the script puts it on sys.path itself).
    """
    out = gguf_path_for(model_dir)
    if out.is_file():
        return out, 0.0
    script = llama_src / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise PeerError(f"llama.cpp converter not found at {script}")
    tmp = out.with_name(out.name + ".partial")
    tmp.unlink(missing_ok=True)
    t0 = time.perf_counter()
    cmd = [python, str(script), str(model_dir), "--outfile", str(tmp), "--outtype", "bf16"]
    log.info("converting to GGUF: %s", " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise PeerError(f"convert_hf_to_gguf failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}")
    os.replace(tmp, out)
    return out, time.perf_counter() - t0


# ---- children ------------------------------------------------------------------------------------------
def _run_child(cmd: list[str], env: dict[str, str], what: str) -> dict[str, Any]:
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0 or "@@RESULT@@" not in proc.stdout:
        sys.stderr.write(proc.stdout[-4000:])
        raise PeerError(f"{what} child failed (exit {proc.returncode})")
    return json.loads(proc.stdout.split("@@RESULT@@", 1)[1])


# --isa avx2: what an AVX2-only CPU would show, measured on any x86-64 CPU with AVX2 (an AVX-512 one included).
# Lantern's kernels are forced to their AVX2 path and torch's own CPU kernels (ATen, oneDNN) to AVX2; llama.cpp
# must be a build without AVX-512 / AVX-VNNI / AMX (`make bench-peer BENCH_PEER=avx2` builds one), which
# check_isa() verifies from its system info.
ISA_ENV: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"LANTERN_CPU_KERNELS": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def check_isa(isa: str, runs: list[dict[str, Any]]) -> list[str]:
    """Problems with a run meant to use only `isa` ([] when each engine used what it should)."""
    if isa == "native":
        return []
    problems = []
    for x in runs:
        r = x["result"]
        if x["engine"] == "lantern" and r.get("kernels", {}).get("backend") != f"cpu-{isa}":
            problems.append(f"Lantern ran {r.get('kernels', {}).get('backend')}, not cpu-{isa}")
        if x["engine"] == "llama":
            info = r.get("system_info", "")
            used = sorted(set(re.findall(r"\b(AVX512\w*|AVX_VNNI|AMX\w*) = 1", info)))
            if used:
                problems.append(f"llama.cpp was built with {', '.join(used)} (rebuild it: make bench-peer BENCH_PEER={isa})")
    return sorted(set(problems))


def run_lantern(model_dir: Path, common: dict[str, Any], extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    cc = {"model_dir": str(model_dir), "threads": common["threads"], "prompt_len": common["prompt_len"],
          "decode_tokens": common["decode_tokens"], "ttft_len": common["ttft_len"],
          "max_context": common["max_context"], "components": False, "seed": common["seed"]}
    env = dict(os.environ, OMP_NUM_THREADS=str(common["threads"]), **(extra_env or {}))
    return _run_child([sys.executable, "-m", "engine.bench", "--child", json.dumps(cc)], env, "Lantern")


def run_llama(llama_python: str, gguf: Path, common: dict[str, Any], flash_attn: bool) -> dict[str, Any]:
    cfg = dict(common, gguf=str(gguf), flash_attn=flash_attn)
    env = dict(os.environ, OMP_NUM_THREADS=str(common["threads"]),
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return _run_child([llama_python, "-m", "engine.bench.peer_child", json.dumps(cfg)], env, "llama.cpp")


# ---- summary -------------------------------------------------------------------------------------------
def _median(runs: list[dict[str, Any]], get: Callable[[dict[str, Any]], float]) -> float | None:
    vals = []
    for r in runs:
        try:
            vals.append(float(get(r)))
        except (KeyError, TypeError):
            continue
    return statistics.median(vals) if vals else None


# (label, getter, unit formatter, "higher" | "lower" is better)
METRICS: list[tuple[str, Callable[[dict[str, Any]], float], str, str]] = [
    ("load", lambda r: r["load_s"], "{:.2f} s", "lower"),
    ("TTFT 1k, first forward after load", lambda r: r["ttft_first"]["wall_s"], "{:.1f} s", "lower"),
    ("TTFT 1k, warm", lambda r: r["ttft_warm"]["wall_s"], "{:.1f} s", "lower"),
    ("prefill 512", lambda r: r["prefill_tok_s"], "{:.1f} tok/s", "higher"),
    ("decode 128, median step", lambda r: r["decode_tok_s_median"], "{:.2f} tok/s", "higher"),
    ("decode 128, mean", lambda r: r["decode_tok_s_mean"], "{:.2f} tok/s", "higher"),
    ("decode 128, fastest step", lambda r: 1.0 / min(r["decode_step_s"]), "{:.2f} tok/s", "higher"),
    ("peak RSS (VmHWM)", lambda r: r["peak_rss"] / GiB, "{:.2f} GiB", "lower"),
    ("  peak anonymous (sampled)", lambda r: r["peak_anon"] / GiB, "{:.2f} GiB", "lower"),
    ("  peak file-backed (sampled)", lambda r: r["peak_file"] / GiB, "{:.2f} GiB", "lower"),
    ("  anonymous after load", lambda r: r["mem_after_load"]["RssAnon"] / GiB, "{:.2f} GiB", "lower"),
    ("CPU share: prefill", lambda r: 100 * r["prefill"]["cpu_share"], "{:.0f} %", "info"),
    ("CPU share: decode", lambda r: 100 * r["decode"]["cpu_share"], "{:.0f} %", "info"),
]


def summarize(lantern: list[dict[str, Any]], llama: list[dict[str, Any]],
              bandwidth_Bps: float | None = None, traffic_bytes: int | None = None) -> list[dict[str, Any]]:
    """One row per metric: medians over each engine's runs and the ratio Lantern / llama.cpp."""
    metrics = list(METRICS)
    if bandwidth_Bps and traffic_bytes:
        metrics.insert(7, ("decode share of read bandwidth",
                           lambda r: 100 * traffic_bytes * r["decode_tok_s_median"] / bandwidth_Bps, "{:.0f} %",
                           "higher"))
    rows = []
    for label, get, fmt, better in metrics:
        a, b = _median(lantern, get), _median(llama, get)
        ratio = a / b if a is not None and b not in (None, 0.0) else None
        rows.append({"measure": label, "lantern": a, "llama_cpp": b, "ratio": ratio, "better": better, "fmt": fmt})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    def f(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else fmt.format(v)

    cells = [(r["measure"], f(r["lantern"], r["fmt"]), f(r["llama_cpp"], r["fmt"]),
              "" if r["ratio"] is None or r["better"] == "info" else f"{r['ratio']:.2f}x",
              "" if r["better"] == "info" else f"({r['better']} is better)") for r in rows]
    head = ("measure", "Lantern", "llama.cpp", "Lantern/llama.cpp", "")
    w = [max(len(c[i]) for c in cells + [head]) for i in range(5)]
    lines = [f"{head[0]:<{w[0]}}  {head[1]:>{w[1]}}  {head[2]:>{w[2]}}  {head[3]:>{w[3]}}",
             "-" * (sum(w[:4]) + 6 + w[4])]
    lines += [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}  {d:>{w[3]}}  {e}" for a, b, c, d, e in cells]
    return "\n".join(lines)


def run_order(pairs: int, first: str) -> list[str]:
    """Alternating order of runs: "AB" * pairs (A = Lantern) or starting with llama.cpp."""
    assert first in ("lantern", "llama")
    pair = ["lantern", "llama"] if first == "lantern" else ["llama", "lantern"]
    return pair * pairs


def save_peer(result: dict[str, Any], out_dir: Path) -> Path:
    """.bench/bench-peer-<utc>.json and .bench/peer-latest.json (make bench's latest.json is left alone)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-peer-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    text = json.dumps(result, indent=2, default=str)
    path.write_text(text)
    (out_dir / "peer-latest.json").write_text(text)
    return path


def mem_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ---- CLI -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.bench.peer", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pairs", type=int, default=2, help="Lantern/llama.cpp run pairs, alternating (default 2)")
    p.add_argument("--first", choices=["lantern", "llama"], default="lantern")
    p.add_argument("--small", action="store_true", help="a 2-layer, 256-wide checkpoint: proves the pipeline fast")
    p.add_argument("--layers", type=int, default=None,
                   help="gpt-oss-20b widths with this many layers (a memory-light check at the real widths)")
    p.add_argument("--cache-dir", type=Path, default=None, help=f"checkpoint/GGUF cache ({default_cache_dir()})")
    p.add_argument("--model-dir", type=Path, default=None, help="an HF-layout gpt-oss checkpoint to use instead")
    p.add_argument("--gguf", type=Path, default=None, help="use this GGUF instead of converting")
    p.add_argument("--llama-python", default=str(PEER_VENV / "bin" / "python"),
                   help="Python with llama-cpp-python installed (default .venv-peer)")
    p.add_argument("--llama-src", type=Path, default=None, help="llama.cpp source tree with convert_hf_to_gguf.py")
    p.add_argument("--flash-attn", choices=["on", "off"], default="on",
                   help="llama.cpp flash attention (its own default 'auto' turns it on for the CPU backend)")
    p.add_argument("--out", type=Path, default=Path(".bench"))
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--ttft-len", type=int, default=1024)
    p.add_argument("--context", type=int, default=2048, help="KV cache size for both engines")
    p.add_argument("--no-bandwidth", action="store_true")
    p.add_argument("--isa", choices=sorted(ISA_ENV), default="native",
                   help="avx2: Lantern forced to its AVX2 kernels (torch too), llama.cpp checked for an AVX2-only build")
    p.add_argument("--no-cache-isolation", action="store_true",
                   help="do not drop the other engine's files from the page cache / warm this engine's before a run")
    p.add_argument("--min-available-gib", type=float, default=None,
                   help="refuse to start the llama.cpp runs below this much MemAvailable "
                        "(default: 1.5x the GGUF size; 0 disables)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    if not Path(args.llama_python).exists():
        print(f"no llama-cpp-python interpreter at {args.llama_python} (make bench-peer builds .venv-peer)",
              file=sys.stderr)
        return 2
    cache = args.cache_dir or default_cache_dir()
    if args.model_dir is not None:
        model_dir, wrote = args.model_dir, 0.0
    elif args.small:
        model_dir, wrote = ensure_checkpoint(cache / "small", SMALL, seed=0)
    elif args.layers is not None:
        model_dir, wrote = ensure_checkpoint(cache / f"layers{args.layers}", Shape20b(layers=args.layers), seed=0)
    else:
        model_dir, wrote = ensure_checkpoint(cache)
    log.info("checkpoint %s (%s)", model_dir, f"written in {wrote:.0f} s" if wrote else "reused")
    if args.gguf is not None:
        gguf, converted = args.gguf, 0.0
    else:
        src = args.llama_src or default_llama_src()
        if src is None:
            print("no llama.cpp source tree (convert_hf_to_gguf.py); pass --llama-src or --gguf", file=sys.stderr)
            return 2
        gguf, converted = ensure_gguf(model_dir, src)
    log.info("GGUF %s (%s)", gguf, f"converted in {converted:.0f} s" if converted else "reused")

    need = args.min_available_gib * GiB if args.min_available_gib is not None else 1.5 * gguf.stat().st_size
    avail = mem_available_bytes()
    if need and avail is not None and avail < need:
        print(f"only {avail / GiB:.1f} GiB available, the llama.cpp run needs about {need / GiB:.1f} GiB; "
              "not starting (see --min-available-gib)", file=sys.stderr)
        return 3

    common = {"threads": args.threads, "prompt_len": args.prompt_len, "decode_tokens": args.decode_tokens,
              "ttft_len": args.ttft_len, "max_context": args.context, "seed": 0}
    before = loadavg()
    runs: list[dict[str, Any]] = []
    files = engine_files(model_dir, gguf)
    for k, engine in enumerate(run_order(args.pairs, args.first)):
        log.info("run %d/%d: %s", k + 1, 2 * args.pairs, engine)
        cache_prep = None if args.no_cache_isolation else isolate_page_cache(engine, files)
        t0 = time.strftime("%H:%M:%S", time.gmtime())
        if engine == "lantern":
            r = run_lantern(model_dir, common, ISA_ENV[args.isa])
        else:
            r = run_llama(args.llama_python, gguf, common, args.flash_attn == "on")
        runs.append({"engine": engine, "started_utc": t0, "loadavg": loadavg(), "page_cache": cache_prep, "result": r})
        log.info("%s: load %.1f s, prefill %.1f tok/s, decode %.2f tok/s (median), peak RSS %.2f GiB", engine,
                 r["load_s"], r["prefill_tok_s"], r["decode_tok_s_median"], r["peak_rss"] / GiB)
        args.out.mkdir(parents=True, exist_ok=True)   # a long run keeps what it measured so far
        (args.out / "peer-partial.json").write_text(json.dumps({"runs": runs, "config": common}, default=str))
    after = loadavg()
    lantern = [x["result"] for x in runs if x["engine"] == "lantern"]
    llama = [x["result"] for x in runs if x["engine"] == "llama"]

    bandwidth = None
    if not args.no_bandwidth:
        from engine.bench.run import read_bandwidth

        bandwidth = read_bandwidth(args.threads)
    traffic = lantern[0]["traffic"]["total"] if lantern and "traffic" in lantern[0] else None
    rows = summarize(lantern, llama, bandwidth["best_GBps"] * 1e9 if bandwidth else None, traffic)
    isa_problems = check_isa(args.isa, runs)
    result = {
        "kind": "bench-peer", "config": dict(common, pairs=args.pairs, first=args.first,
                                             flash_attn=args.flash_attn, small=args.small, layers=args.layers,
                                             cache_isolation=not args.no_cache_isolation, isa=args.isa),
        "model_dir": str(model_dir), "gguf": str(gguf), "gguf_bytes": gguf.stat().st_size,
        "checkpoint_write_s": wrote, "gguf_convert_s": converted, "runs": runs, "summary": rows,
        "bandwidth": bandwidth, "traffic_bytes_per_token": traffic, "isa": args.isa, "isa_problems": isa_problems,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "loadavg_before": before, "loadavg_after": after},
        "issue_reference_llama_cpp": ISSUE_REFERENCE,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    note = ("  (SMALL pipeline check, not gpt-oss-20b shapes)" if args.small else
            f"  (gpt-oss-20b widths, {args.layers} of 24 layers)" if args.layers is not None else "")
    print(f"\ncheckpoint: {model_dir}{note}")
    print(f"GGUF: {gguf} ({gguf.stat().st_size / 1e9:.2f} GB)   threads: {args.threads}   context: {args.context}"
          f"   runs: {' '.join('A' if x['engine'] == 'lantern' else 'B' for x in runs)} (A = Lantern, B = llama.cpp)\n")
    print(table(rows))
    kern = lantern[0].get("kernels", {}) if lantern else {}
    print(f"\ninstruction sets: --isa {args.isa}; Lantern kernels {kern.get('backend')}"
          + (f" ({kern['reason']})" if kern.get("reason") else "")
          + (f"; llama.cpp {llama[0].get('system_info', '?').strip()}" if llama else ""))
    for problem in isa_problems:
        print(f"WARNING: not a fair --isa {args.isa} comparison: {problem}")
    print("per run (in order): " + "; ".join(
        f"{x['engine']}: prefill {x['result']['prefill_tok_s']:.1f}, decode {x['result']['decode_tok_s_median']:.2f} tok/s"
        for x in runs))
    if bandwidth:
        print(f"read bandwidth {bandwidth['best_GBps']:.1f} GB/s; bytes per decoded token "
              f"{(traffic or 0) / 1e9:.2f} GB (same traffic model for both engines)")
    print(f"cpu: {cpu_name()}   load average before/after: {before} / {after}")
    print("issue's reference for llama.cpp here: decode 8.5 tok/s median (best 9.75), prefill ~20 tok/s, "
          "load 21-38 s, peak RSS ~22 GiB")
    peer_path = save_peer(result, args.out)
    print(f"\nsaved {peer_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
