"""A HistoryStore with a scripted clock, for the history tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.history import HistoryStore


@contextmanager
def ticking_store(path: Path, start: float = 1000.0, step: float = 1.0) -> Iterator[HistoryStore]:
    """A store whose clock reads start, start + step, ... (strictly increasing: ordering is deterministic)."""
    ticks = itertools.count(start, step)
    store = HistoryStore(path, clock=lambda: next(ticks))
    try:
        yield store
    finally:
        store.close()
