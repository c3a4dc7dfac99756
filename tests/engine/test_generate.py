"""Generation: greedy decode with the cache follows the reference model; stops, cancellation, usage."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch

from engine.generate import generate
from engine.kv_cache import KVCache
from engine.model import Transformer
from engine.sampling import Sampler
from tests.engine.oracles import hf_logits, reference_logits

# Near-tie margin: the reference rounds logits to bf16 (ulp 2^-6 at |logit| 2..4) and the typical
# oracle-to-oracle spread is ~0.05 (test_parity.py); a step whose top-2 gap is below this is a tie.
TIE = 0.06


@pytest.mark.parametrize(("name", "prompt_len", "new"), [("w8-e4k2-l2", 12, 40), ("w128-e6k3-l3", 120, 40)])
def test_greedy_decode_follows_reference_argmax(name: str, prompt_len: int, new: int,
                                                model_dir_for: Callable[[str], Path]) -> None:
    """Cached greedy decoding reaches >= 32 tokens past the window; at every step the token we chose is the
    argmax of the oracles' full-sequence pass (no cache), or within bf16 noise of it. Where the reference
    and transformers disagree with each other (a routing flip, see test_parity.py) agreeing with one suffices."""
    root = model_dir_for(name)
    model = Transformer.from_checkpoint(root)
    prompt = torch.randint(0, 200_000, (prompt_len,), generator=torch.Generator().manual_seed(5)).tolist()
    cache = KVCache(model.config, prompt_len + new)
    gen = generate(model, cache, prompt, max_new_tokens=new, sampler=Sampler(0.0), stop_tokens=(),
                   prefill_chunk=37)
    out = list(gen)
    assert len(out) == new and gen.result is not None and gen.result.reason == "length"
    assert prompt_len + new - model.config.sliding_window >= 32
    assert cache.length == prompt_len + new - 1
    seq = prompt + out
    chosen = torch.tensor(out)
    gaps, exact = [], []
    for oracle in (reference_logits(root, seq[:-1]), hf_logits(root, seq[:-1])):
        logits = oracle[prompt_len - 1:]                             # [new, V]: the logits that chose each token
        gaps.append(logits.max(-1).values - logits.gather(1, chosen[:, None])[:, 0])
        exact.append(int((logits.argmax(-1) == chosen).sum()))
    gap = torch.minimum(gaps[0], gaps[1])
    print(f"\n[{name}] greedy: {exact[0]}/{new} tokens = reference argmax, {exact[1]}/{new} = transformers argmax; "
          f"worst gap ref {gaps[0].max():.4f} hf {gaps[1].max():.4f}")
    assert (gap <= TIE).all(), f"step {int(gap.argmax())} chose a token {gap.max():.3f} below both oracles' best"
    assert max(exact) >= new * 0.9                    # the rest: exact bf16 ties in the oracles' logits
    # and our own full-sequence pass (no cache) agrees with the cached decode exactly
    ours_full = model(torch.tensor(seq[:-1]))[prompt_len - 1:]
    assert torch.equal(ours_full.argmax(-1), chosen)


def _model(root: Path) -> Transformer:
    return Transformer.from_checkpoint(root)


def test_stop_token_is_yielded_last(tiny_model_dir: Path) -> None:
    model = _model(tiny_model_dir)
    prompt = [1, 2, 3, 4]
    free = list(generate(model, KVCache(model.config, 32), prompt, max_new_tokens=6, sampler=Sampler(0.0),
                         stop_tokens=()))
    stop = free[2]
    assert stop not in free[:2]
    cache = KVCache(model.config, 32)
    gen = generate(model, cache, prompt, max_new_tokens=6, sampler=Sampler(0.0), stop_tokens=(stop, 999))
    out = list(gen)
    assert out == free[:3]
    r = gen.result
    assert r is not None and r.reason == "stop" and r.stop_token == stop
    assert r.prompt_tokens == 4 and r.completion_tokens == 3
    assert cache.length == 4 + 2
    assert r.time_to_first_token_s > 0 and r.prefill_tokens_per_s > 0 and r.decode_tokens_per_s > 0
    assert r.peak_memory_bytes > 0


def test_should_stop_between_prefill_chunks_and_tokens(tiny_model_dir: Path) -> None:
    model = _model(tiny_model_dir)
    calls = {"n": 0}

    def stop_at(k: int) -> Callable[[], bool]:
        calls["n"] = 0

        def should_stop() -> bool:
            calls["n"] += 1
            return calls["n"] >= k
        return should_stop

    cache = KVCache(model.config, 64)
    gen = generate(model, cache, list(range(10)), max_new_tokens=5, sampler=Sampler(0.0), stop_tokens=(),
                   should_stop=stop_at(3), prefill_chunk=3)
    assert list(gen) == []
    assert gen.result is not None and gen.result.reason == "cancelled"
    assert cache.length == 6                                  # two chunks of 3 went through, then it stopped
    cache.reset()
    gen = generate(model, cache, list(range(10)), max_new_tokens=50, sampler=Sampler(0.0), stop_tokens=(),
                   should_stop=stop_at(4 + 5), prefill_chunk=3)   # 4 prefill checks, then 5 decode checks
    out = list(gen)
    assert len(out) == 5 and gen.result is not None and gen.result.reason == "cancelled"
    assert cache.length == 10 + 4


def test_generation_continues_after_cached_prefix(tiny_model_dir: Path) -> None:
    """Appending to a cache that already holds a prefix gives what one generate over everything gives."""
    model = _model(tiny_model_dir)
    prompt = list(range(100, 120))
    whole = list(generate(model, KVCache(model.config, 64), prompt, max_new_tokens=8, sampler=Sampler(0.0),
                          stop_tokens=()))
    cache = KVCache(model.config, 64)
    model(torch.tensor(prompt[:15]), cache)
    rest = list(generate(model, cache, prompt[15:], max_new_tokens=8, sampler=Sampler(0.0), stop_tokens=()))
    assert rest == whole


def test_context_full_is_raised_before_generating(tiny_model_dir: Path) -> None:
    from engine.errors import ContextFull

    model = _model(tiny_model_dir)
    with pytest.raises(ContextFull):
        generate(model, KVCache(model.config, 8), list(range(9)), max_new_tokens=1, sampler=Sampler(0.0),
                 stop_tokens=())
    cache = KVCache(model.config, 8)
    gen = generate(model, cache, list(range(6)), max_new_tokens=10, sampler=Sampler(0.0), stop_tokens=())
    assert len(list(gen)) == 3 and gen.result is not None and gen.result.reason == "length"
    assert cache.length == 8
