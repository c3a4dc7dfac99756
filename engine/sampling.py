"""Next-token sampling: greedy (temperature 0), temperature, nucleus (top-p), seeded."""

from __future__ import annotations

import torch


class Sampler:
    """`sampler(logits [V] f32) -> token id`. The same seed gives the same tokens for the same logits."""

    def __init__(self, temperature: float, top_p: float = 1.0, seed: int | None = None) -> None:
        if not temperature >= 0:
            raise ValueError("temperature must be >= 0")
        if not 0.0 < top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.seed = seed
        self._generator = torch.Generator()            # CPU generator: the same stream on every device
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(int(seed))

    def _candidates(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(probabilities, token ids) of the tokens that may be drawn; ids None means all of them, in order."""
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)          # [V] f32
        if self.top_p >= 1.0:
            return probs, None
        # The nucleus is usually small: look for it among the top candidates before sorting everything.
        for k in (256, 8192, probs.shape[0]):
            k = min(k, probs.shape[0])
            top_p, top_i = torch.topk(probs, k)                                  # sorted, descending
            if k == probs.shape[0] or top_p.sum() >= self.top_p:
                break
        before = torch.cumsum(top_p, dim=-1) - top_p       # mass of strictly more likely tokens
        keep = before < self.top_p                         # the smallest prefix whose mass reaches top_p
        kept = top_p[keep]
        return kept / kept.sum(), top_i[keep]

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """[V] f32 distribution actually sampled from (zero outside the nucleus)."""
        probs, ids = self._candidates(logits.reshape(-1))
        if ids is None:
            return probs
        return torch.zeros_like(logits.reshape(-1), dtype=torch.float32).index_put_((ids,), probs)

    def __call__(self, logits: torch.Tensor) -> int:
        logits = logits.reshape(-1)
        if self.temperature == 0.0:
            return int(torch.argmax(logits).item())
        probs, ids = self._candidates(logits)
        cdf = torch.cumsum(probs.to("cpu", torch.float64), dim=0)
        u = torch.rand((), generator=self._generator, dtype=torch.float64) * cdf[-1]
        # first index whose cumulative mass exceeds u: zero-probability tokens are never chosen
        pick = int(torch.searchsorted(cdf, u.reshape(1), right=True).clamp(max=cdf.shape[0] - 1).item())
        return pick if ids is None else int(ids[pick].item())
