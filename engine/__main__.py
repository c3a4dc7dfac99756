"""Engine command line: `python -m engine info|logits|generate|serve [...]` (and `chat` when engine.chat_cli exists).

User errors (EngineError) print one line on stderr and exit with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from pathlib import Path
from typing import Any

from engine.errors import EngineError

DEFAULT_CONTEXT = 8192


def _tokens(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated token ids, e.g. 1,2,3") from None
    if not ids:
        raise argparse.ArgumentTypeError("expected at least one token id")
    return ids


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def _check_vocab(tokens: list[int], vocab: int) -> None:
    bad = [t for t in tokens if not 0 <= t < vocab]
    if bad:
        raise EngineError(f"Token id {bad[0]} is outside the vocabulary (0..{vocab - 1})")


def cmd_info(args: argparse.Namespace) -> int:
    from engine.checkpoint import open_checkpoint

    ckpt = open_checkpoint(args.model)
    cfg, loc = ckpt.config, ckpt.location
    info: dict[str, Any] = {
        "path": str(Path(args.model).resolve()),
        "layout": loc.layout,
        "weights_dir": str(loc.weights_dir),
        "layers": cfg.num_hidden_layers,
        "experts": cfg.num_experts,
        "experts_per_token": cfg.experts_per_token,
        "hidden_size": cfg.hidden_size,
        "sliding_window": cfg.sliding_window,
        "vocab_size": cfg.vocab_size,
        "max_context": cfg.max_context,
        "params_total": cfg.params_total(),
        "params_active": cfg.params_active(),
        "bytes_on_disk": ckpt.bytes_on_disk,
        "weight_bytes": cfg.weight_bytes(),
        "context": args.context,
        "kv_cache_bytes": cfg.kv_cache_bytes(args.context),
        "memory_needed_bytes": cfg.memory_needed_bytes(args.context),
    }
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"layout:            {info['layout']} ({info['weights_dir']})")
    print(f"layers:            {info['layers']} (sliding window {info['sliding_window']} on even layers)")
    print(f"experts:           {info['experts']} ({info['experts_per_token']} per token)")
    print(f"parameters:        {info['params_total']:,} total, {info['params_active']:,} active per token")
    print(f"bytes on disk:     {info['bytes_on_disk']:,} ({_human(info['bytes_on_disk'])})")
    print(f"memory needed:     {info['memory_needed_bytes']:,} ({_human(info['memory_needed_bytes'])}) = "
          f"weights {_human(info['weight_bytes'])} + KV cache {_human(info['kv_cache_bytes'])} "
          f"at {args.context:,} tokens")
    return 0


def _load(args: argparse.Namespace):
    from engine.checkpoint import open_checkpoint

    ckpt = open_checkpoint(args.model)          # validates the files before torch is even imported
    _check_vocab(args.tokens, ckpt.config.vocab_size)
    import torch

    from engine.backends import select_device
    from engine.model import Transformer

    choice = select_device(args.device)
    if choice.fallback_reason and args.device != "auto":
        print(f"note: {choice.fallback_reason}", file=sys.stderr)
    torch.set_grad_enabled(False)
    return Transformer.from_checkpoint(ckpt, device=choice.device)


def cmd_logits(args: argparse.Namespace) -> int:
    model = _load(args)
    import numpy as np
    import torch

    logits = model(torch.tensor(args.tokens, dtype=torch.long))          # [T, V] f32, no cache
    np.save(args.out, logits.float().cpu().numpy())
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    model = _load(args)
    from engine.generate import generate
    from engine.kv_cache import KVCache
    from engine.sampling import Sampler

    context = args.max_context or len(args.tokens) + max(0, args.max_new_tokens)
    cache = KVCache(model.config, context, device=model.device)
    try:
        sampler = Sampler(args.temperature, args.top_p, args.seed)
    except ValueError as exc:
        raise EngineError(str(exc)) from exc
    stop = _default_stop_tokens() if args.stop_tokens is None else tuple(
        int(t) for t in args.stop_tokens.split(",") if t.strip())
    gen = generate(model, cache, args.tokens, max_new_tokens=args.max_new_tokens, sampler=sampler,
                   stop_tokens=stop, prefill_chunk=args.prefill_chunk)
    out = []
    for tok in gen:
        out.append(tok)
        if not args.json:
            print(tok, flush=True)
    r = gen.result
    assert r is not None
    usage = {
        "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
        "prefill_tokens_per_s": r.prefill_tokens_per_s, "decode_tokens_per_s": r.decode_tokens_per_s,
        "time_to_first_token_s": r.time_to_first_token_s, "peak_memory_bytes": r.peak_memory_bytes,
    }
    if args.json:
        print(json.dumps({"tokens": out, "finish_reason": r.reason, "stop_token": r.stop_token, "usage": usage,
                          "device": str(model.device)}))
    else:
        print(f"finish: {r.reason}; prompt {r.prompt_tokens} tok at {r.prefill_tokens_per_s:.1f} tok/s, "
              f"{r.completion_tokens} generated at {r.decode_tokens_per_s:.1f} tok/s, "
              f"first token {r.time_to_first_token_s:.3f} s, peak memory {_human(r.peak_memory_bytes)}",
              file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Lantern's gpt-oss engine")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, type=Path, help="HF repo root or its original/ folder")

    def device_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])

    p = sub.add_parser("info", help="describe a checkpoint (no weights are loaded)")
    model_arg(p)
    p.add_argument("--context", type=int, default=DEFAULT_CONTEXT, help="context length for the memory estimate")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("logits", help="fp32 logits [T, vocab] of one forward pass (no cache), saved as .npy")
    model_arg(p)
    device_arg(p)
    p.add_argument("--tokens", required=True, type=_tokens)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_logits)

    p = sub.add_parser("generate", help="decode with the KV cache")
    model_arg(p)
    device_arg(p)
    p.add_argument("--tokens", required=True, type=_tokens)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop-tokens", default=None,
                   help="comma-separated ids (default: 200002,200012,199999; '' for none)")
    p.add_argument("--max-context", type=int, default=None)
    p.add_argument("--prefill-chunk", type=int, default=256)
    p.add_argument("--json", action="store_true", help="print one JSON object with tokens and usage")
    p.set_defaults(func=cmd_generate)

    if importlib.util.find_spec("engine.chat_cli") is not None:
        from engine import chat_cli

        chat_cli.add_parser(sub)
    from engine.server import serve

    serve.add_parser(sub)
    return parser


def _default_stop_tokens() -> tuple[int, ...]:
    """<|return|>, <|call|>, <|endoftext|>: the assistant's stop set, from the one special-token table."""
    from engine.harmony import STOP_TOKEN_NAMES
    from engine.tokenizer import SPECIAL_TOKENS

    return tuple(SPECIAL_TOKENS[name] for name in STOP_TOKEN_NAMES)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
