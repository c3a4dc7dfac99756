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


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def raw_request(served: Served, method: str, path: str, body: bytes | None = None, key: str | None = API_KEY,
                headers: dict[str, str] | None = None) -> RawResponse:
    """One plain HTTP request (stdlib), for what the openai client will not send (bad bodies, no token)."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(served.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if key:
            hdrs["Authorization"] = f"Bearer {key}"
        conn.request(method, url.path + path, body=body, headers=hdrs)
        r = conn.getresponse()
        return RawResponse(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()
