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


EDIT_SHARE = 0.9


class SessionPool:
    def __init__(self, engine: Any, size: int = 1) -> None:
        if size < 1:
            raise ValueError("a session pool needs at least one session")
        self.engine = engine
        self.size = size
        self._sessions: list[Any] = []
        self._last_used: dict[int, int] = {}
        self._prompt_len: dict[int, int] = {}     # length of the prompt each session ran last
        self._clock = itertools.count()

    def acquire_for(self, messages: Sequence[Any], params: Any) -> Any:
        """The session for a conversation (rendered only when there is a choice to make)."""
        if self.size == 1 and self._sessions:
            return self._sessions[0]
        prompt = self.engine.render(messages, params) if self.size > 1 else []
        return self.acquire(prompt)[0]

    def acquire(self, prompt: Sequence[int]) -> tuple[Any, int]:
        """(session to run `prompt` in, tokens of the prompt its cache already holds).

        A session continues its conversation when the new prompt starts with the whole prompt it
        ran last (the client resent the conversation with more turns): the longest such match wins.
        Otherwise this is another conversation (or an edited one): a free slot, else the session
        sharing at least 90% of the prompt (an edit late in a long chat), else the least recently
        used one, so that other conversations keep their caches (a shared system message alone does
        not make two conversations the same).
        """
        from engine.api import common_prefix_len   # torch: only ever on the model thread

        scored = [(common_prefix_len(s.tokens, prompt), self._last_used[id(s)], s) for s in self._sessions]
        continuing = [t for t in scored if t[0] > 0 and t[0] >= self._prompt_len.get(id(t[2]), 0)]
        best_any = max(scored, key=lambda t: (t[0], t[1]), default=None)
        if continuing:
            shared, _, session = max(continuing, key=lambda t: (t[0], t[1]))
        elif len(self._sessions) < self.size:
            session = self.engine.new_session(own_cache=True) if self.size > 1 else self.engine.new_session()
            self._sessions.append(session)
            shared = 0
        elif best_any is not None and best_any[0] >= EDIT_SHARE * len(prompt):
            shared, _, session = best_any
        else:
            shared, _, session = min(scored, key=lambda t: t[1])
        self._last_used[id(session)] = next(self._clock)
        self._prompt_len[id(session)] = len(prompt)
        return session, shared

    def close(self) -> None:
        for s in self._sessions:
            s.close()
        self._sessions.clear()
