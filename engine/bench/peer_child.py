"""The llama.cpp side of `make bench-peer`, run in its own process with the peer venv's Python.

Imports only the standard library, numpy, `llama_cpp` and the torch-free helpers of `engine.bench.run`
(the peer venv has no torch). It mirrors Lantern's child (`engine.bench.run.run_child`) step by step:
load, time to first token for a 1k prompt straight after load, prefill of a 512-token prompt, greedy
decode of 128 tokens after it (one `llama_decode` per token, argmax of the last logits in Python, as
Lantern's loop does), then the 1k prompt again warm. Memory: peak RSS (VmHWM) and sampled peaks of
anonymous and file-backed resident memory, plus the split right after load.

Usage: `python -m engine.bench.peer_child '<json ChildConfig-like dict with "gguf">'`; prints one line
`@@RESULT@@{json}` on stdout.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from typing import Any

from engine.bench.run import MemorySampler, Phase, proc_status

log = logging.getLogger("engine.bench.peer_child")

ORDINARY_TOKENS = 199998  # ids below this are ordinary (non-special) o200k_harmony tokens


def run_llama(cfg: dict[str, Any]) -> dict[str, Any]:
    """Measure llama.cpp (through llama-cpp-python) on the GGUF at cfg["gguf"]."""
    import numpy as np

    import llama_cpp
    from llama_cpp import Llama

    threads = int(cfg.get("threads", 2))
    n_ctx = int(cfg.get("max_context", 2048))
    prompt_len = int(cfg.get("prompt_len", 512))
    decode_tokens = int(cfg.get("decode_tokens", 128))
    ttft_len = int(cfg.get("ttft_len", 1024))
    # llama.cpp's own tools default to flash attention "auto" (on for the CPU backend) and a sliding-window
    # cache of window size (swa_full=false); llama-cpp-python's defaults differ, so both are set explicitly.
    flash_attn = bool(cfg.get("flash_attn", True))
    rng = np.random.default_rng(int(cfg.get("seed", 0)))
    out: dict[str, Any] = {"threads": threads, "n_ctx": n_ctx, "flash_attn": flash_attn,
                           "llama_cpp_python": getattr(llama_cpp, "__version__", "?"),
                           "system_info": llama_cpp.llama_print_system_info().decode(errors="replace")}
    need = max(ttft_len, prompt_len + decode_tokens)
    if need > n_ctx:
        raise ValueError(f"context {n_ctx} is too small for {need} tokens")

    with MemorySampler() as mem:
        t0 = time.perf_counter()
        llm = Llama(model_path=cfg["gguf"], n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx,
                    n_batch=512, n_ubatch=512, use_mmap=True, use_mlock=False, flash_attn=flash_attn,
                    logits_all=False, swa_full=False, verbose=bool(cfg.get("verbose", False)))
        out["load_s"] = time.perf_counter() - t0
        out["mem_after_load"] = proc_status()
        n_vocab = llm.n_vocab()
        vocab = min(ORDINARY_TOKENS, n_vocab)

        def last_argmax() -> int:
            ptr = llm._ctx.get_logits_ith(-1)                            # [n_vocab] f32, last token
            return int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())

        def prefill(n: int, key: str) -> int:
            llm.reset()                                                 # next eval drops the whole KV cache
            toks = rng.integers(0, vocab, n).tolist()
            with Phase() as ph:
                llm.eval(toks)
                tok = last_argmax()
            out[key] = ph.as_dict(threads)
            log.info("llama.cpp %s (%d tokens): %.2f s wall, %.0f %% of %d cores", key, n, ph.wall_s,
                     100 * out[key]["cpu_share"], threads)
            return tok

        if ttft_len:
            prefill(ttft_len, "ttft_first")
        tok = prefill(prompt_len, "prefill")
        out["prefill_tok_s"] = prompt_len / out["prefill"]["wall_s"]
        steps = []
        with Phase() as ph:
            for _ in range(decode_tokens):
                t = time.perf_counter()
                llm.eval([tok])
                tok = last_argmax()
                steps.append(time.perf_counter() - t)
        out["decode"] = ph.as_dict(threads)
        out["decode_step_s"] = steps
        out["decode_tok_s_median"] = 1.0 / statistics.median(steps)
        out["decode_tok_s_mean"] = len(steps) / sum(steps)
        log.info("llama.cpp decode: median %.2f tok/s", out["decode_tok_s_median"])
        if ttft_len:
            prefill(ttft_len, "ttft_warm")
        out["mem_end"] = proc_status()
    out["peak_rss"] = out["mem_end"].get("VmHWM", 0)
    out["peak_anon"] = mem.peak_anon
    out["peak_file"] = mem.peak_file
    close = getattr(llm, "close", None)
    if close is not None:
        close()
    return out


def llama_logits(gguf: str, tokens: list[int], out_npy: str, threads: int = 1) -> None:
    """Logits [T, vocab] f32 of every position of `tokens`, saved to out_npy (the cross-engine check)."""
    import numpy as np

    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_threads=threads, n_threads_batch=threads, n_ctx=max(64, len(tokens)),
                n_batch=512, use_mmap=True, logits_all=True, swa_full=False, flash_attn=True, verbose=False)
    llm.eval(tokens)
    np.save(out_npy, np.asarray(llm.scores[: len(tokens)], dtype=np.float32))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = json.loads(argv[0])
    if cfg.get("mode") == "logits":
        llama_logits(cfg["gguf"], cfg["tokens"], cfg["out_npy"], int(cfg.get("threads", 1)))
        result: dict[str, Any] = {"saved": cfg["out_npy"]}
    else:
        result = run_llama(cfg)
    sys.stdout.write("\n@@RESULT@@" + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
