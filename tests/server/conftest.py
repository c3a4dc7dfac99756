"""Servers on 127.0.0.1 with an ephemeral port, stopped by the tests that start them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.server.serve import ApiServer, build

API_KEY = "test-key-123"


@dataclass
class Served:
    url: str
    api_key: str
    engine: Any
    host: Any
    store: Any
    server: ApiServer

    def client(self, **kwargs: Any):
        import openai

        return openai.OpenAI(base_url=self.url, api_key=self.api_key, max_retries=0, timeout=60, **kwargs)


@contextlib.contextmanager
def serve(engine: Any, store_path: Path | None = None, **kwargs: Any) -> Iterator[Served]:
    app, host, store = build(engine, api_key=API_KEY, store_path=store_path, **kwargs)
    server = ApiServer(app, "127.0.0.1", 0)
    server.start()
    try:
        yield Served(server.url, API_KEY, engine, host, store, server)
    finally:
        server.stop()
        host.close()
        store.close()


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[Served]:
    from tests.server.fakes import FakeEngine

    with serve(FakeEngine(), tmp_path / "responses.sqlite3") as s:
        yield s
