"""A few chat sessions kept warm, matched to each request by longest common prefix.

A client that resends a growing conversation (every OpenAI client does) gets the session whose
KV cache holds the longest prefix of the new prompt, so only the new tokens are prefilled; the
engine keeps that prefix itself (`Engine.chat` trims the cache to the common part). With one
session the pool shares the engine's single KV cache (the window's case: the chat and the API take
turns on it); with more, each session keeps a cache of its own (`python -m engine serve
--sessions N`, N caches of the context length in memory).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any


class SessionPool:
    def __init__(self, engine: Any, size: int = 1) -> None:
        if size < 1:
            raise ValueError("a session pool needs at least one session")
        self.engine = engine
        self.size = size
        self._sessions: list[Any] = []
        self._last_used: dict[int, int] = {}
        self._clock = itertools.count()

    def acquire(self, prompt: Sequence[int]) -> tuple[Any, int]:
        """(session to run `prompt` in, tokens of the prompt its cache already holds)."""
        from engine.api import common_prefix_len   # torch: only ever on the model thread

        scored = [(common_prefix_len(s.tokens, prompt), self._last_used[id(s)], s) for s in self._sessions]
        best = max(scored, key=lambda t: (t[0], t[1]), default=None)
        if best is not None and (best[0] > 0 or len(self._sessions) >= self.size):
            session, shared = best[2], best[0]
            if shared == 0:   # nothing in common anywhere: take the least recently used one
                session = min(scored, key=lambda t: t[1])[2]
        else:
            session = self.engine.new_session(own_cache=True) if self.size > 1 else self.engine.new_session()
            self._sessions.append(session)
            shared = 0
        self._last_used[id(session)] = next(self._clock)
        return session, shared

    def close(self) -> None:
        for s in self._sessions:
            s.close()
        self._sessions.clear()
