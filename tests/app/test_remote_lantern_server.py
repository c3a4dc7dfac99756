"""End to end against Lantern's own server: `python -m engine serve` in a second process on loopback,
serving a tiny random checkpoint, used through the remote engine and the worker loop.

Skips while engine.server (issue #14) is not on this branch."""

from __future__ import annotations

import importlib.util
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from app.messages import ChatFinished, ChatUpdate, LoadModel, ModelReady, Shutdown, StartChat
from app.remote.engine import RemoteEngine
from app.remote.errors import AuthFailed, ModelNotFound
from app.remote.target import RemoteTarget
from app.worker import default_engine_factory, serve
from engine.types import Delta, Finished, GenerationParams, Message
from tests.app.remote_support import memory_keyring

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("engine.server") is None,
                       reason="engine.server (python -m engine serve, issue #14) has not landed on this branch"),
]

KEY = "sk-e2e-lantern"
ROOT = Path(__file__).resolve().parents[2]
GREEDY = GenerationParams(temperature=0.0, max_tokens=12, reasoning_effort="low")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lantern_server(tiny_model_dir: Path) -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--model", str(tiny_model_dir),
                             "--host", "127.0.0.1", "--port", str(port), "--api-key", KEY],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"python -m engine serve exited with {proc.returncode}:\n{proc.stdout.read()}")
            try:
                if httpx2.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("python -m engine serve did not answer within 180 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _target(url: str) -> RemoteTarget:
    models = httpx2.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=5).json()["data"]
    return RemoteTarget("lantern", url, models[0]["id"])


def test_chat_with_lantern_serve_through_the_remote_engine(lantern_server: str) -> None:
    engine = RemoteEngine.connect(_target(lantern_server), KEY)
    session = engine.new_session()
    history = [Message("user", "Hello there")]
    events = list(engine.chat(session, history, GREEDY))
    assert sum(isinstance(e, Finished) for e in events) == 1 and isinstance(events[-1], Finished)
    first = events[-1]
    assert first.reason in ("stop", "length"), first.error
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    reply = "".join(e.text for e in events if isinstance(e, Delta) and e.channel == "final")
    # a second turn resends the conversation: the server reuses its cached prefix
    history += [Message("assistant", reply or ".", channel="final"), Message("user", "And again")]
    second = list(engine.chat(session, history, GREEDY))[-1]
    assert second.reason in ("stop", "length") and second.usage.reused_tokens > 0
    engine.close()


def test_stop_and_a_wrong_key_against_lantern_serve(lantern_server: str) -> None:
    with pytest.raises(AuthFailed, match="refused the API key"):
        RemoteEngine.connect(_target(lantern_server), "sk-wrong")
    engine = RemoteEngine.connect(_target(lantern_server), KEY)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    start = time.monotonic()
    events = list(engine.chat(engine.new_session(), [Message("user", "Tell a long story")],
                              GenerationParams(temperature=1.0, max_tokens=4000), stop.is_set))
    assert events[-1].reason == "cancelled" and time.monotonic() - start < 5
    engine.close()


def test_lantern_serve_through_the_worker_loop(lantern_server: str) -> None:
    with memory_keyring():
        from app.remote.keys import default_keys

        target = _target(lantern_server)
        default_keys().set(target.server_id, KEY)
        q: queue.SimpleQueue = queue.SimpleQueue()
        for r in (LoadModel(1, target.pseudo_path, remote=target),
                  StartChat(2, "c", (Message("user", "hi"),), GREEDY), Shutdown()):
            q.put(r)
        events: list = []
        serve(q, events.append, threading.Event(), default_engine_factory)
        default_keys().delete(target.server_id)
    assert any(isinstance(e, ModelReady) and e.info.remote_host for e in events)
    assert [e.reason for e in events if isinstance(e, ChatFinished)][0] in ("stop", "length")
    # the reply reached the window through the worker's one coalescer, as a local reply does
    pieces = [p for e in events if isinstance(e, ChatUpdate) for p in e.pieces]
    assert pieces and "".join(p.text for p in pieces)


def test_the_remote_reply_is_the_local_reply(lantern_server: str, tiny_model_dir: Path) -> None:
    """Same checkpoint, greedy: what the window gets from the server is what it gets from a local run."""
    import datetime

    from engine import Engine

    params = GenerationParams(temperature=0.0, max_tokens=24, reasoning_effort="low",
                              current_date=datetime.date.today().isoformat())   # the server dates its prompt too
    history = [Message("developer", "Be brief."), Message("user", "Hello there")]
    local = Engine.load(tiny_model_dir, device="cpu", max_context=1024)
    local_events = list(local.chat(local.new_session(), history, params))
    local.close()
    remote = RemoteEngine.connect(_target(lantern_server), KEY)
    remote_events = list(remote.chat(remote.new_session(), history, params))
    remote.close()

    def per_channel(events: list) -> dict:
        out: dict = {}
        for e in events:
            if isinstance(e, Delta):
                key = "call" if e.recipient else ("analysis" if e.channel == "analysis" else "answer")
                out[key] = out.get(key, "") + e.text
        return out

    assert per_channel(local_events) and per_channel(remote_events) == per_channel(local_events)
    assert remote_events[-1].reason == local_events[-1].reason
    assert remote_events[-1].usage.completion_tokens == local_events[-1].usage.completion_tokens
    assert remote_events[-1].usage.prompt_tokens == local_events[-1].usage.prompt_tokens


def test_lantern_serve_errors_in_lantern_words(lantern_server: str) -> None:
    target = _target(lantern_server)
    unknown = RemoteEngine(RemoteTarget("lantern", lantern_server, "gpt-oss-999b"), KEY)
    fin = list(unknown.chat(unknown.new_session(), [Message("user", "hi")], GREEDY))[-1]
    assert fin.reason == "error" and "does not serve a model named “gpt-oss-999b”" in fin.error
    unknown.close()
    with pytest.raises(ModelNotFound):
        RemoteEngine.connect(RemoteTarget("lantern", lantern_server, "gpt-oss-999b"), KEY)
    engine = RemoteEngine.connect(target, KEY)
    fin = list(engine.chat(engine.new_session(), [Message("user", "word " * 20000)], GREEDY))[-1]
    assert fin.reason == "error" and "too long for the model's context" in fin.error, fin.error
    assert fin.error_kind == "context_full" and not fin.is_bug
    engine.close()
