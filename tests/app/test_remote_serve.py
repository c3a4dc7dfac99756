"""The worker's Qt-free serve() loop with a remote model: the window gets the same events a local
run gives it (the recorded streams carry the same reply as tests/app/fakes.py's FakeEngine)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest

from app.messages import ChatDelta, ChatFinished, LoadModel, ModelReady, Shutdown, StartChat, WorkerFailed
from app.remote.target import RemoteTarget
from app.worker import default_engine_factory, serve
from engine.types import GenerationParams, Message
from tests.app.fakes import FakeEngine, FakeFactory
from tests.app.recorded_server import RecordedServer
from tests.app.recorded_streams import recordings
from tests.app.remote_support import memory_keyring

HELLO = (Message("user", "hello"),)


@pytest.fixture(autouse=True)
def _keyring():
    with memory_keyring() as backend:
        yield backend


@pytest.fixture
def server():
    with RecordedServer(recordings()) as s:
        yield s


def run(requests: list, factory, cancel: threading.Event | None = None, emit=None) -> list:  # noqa: ANN001
    q: queue.SimpleQueue = queue.SimpleQueue()
    for r in requests + [Shutdown()]:
        q.put(r)
    events: list = []

    def collect(e: object) -> None:
        events.append(e)
        if emit is not None:
            emit(e)

    serve(q, collect, cancel or threading.Event(), factory, coalesce_seconds=0.0)
    return events


def load_remote(server: RecordedServer, model: str, rid: int = 1) -> LoadModel:
    target = RemoteTarget("s1", server.url, model)
    return LoadModel(rid, target.pseudo_path, remote=target)


def chat(rid: int = 2) -> StartChat:
    return StartChat(rid, "c1", HELLO, GenerationParams())


def shown(events: list) -> list[tuple]:
    """What the window acts on: each delta's channel, text and recipient, and how the reply ended."""
    out: list[tuple] = []
    for e in events:
        if isinstance(e, ChatDelta):
            out.append(("delta", e.channel, e.text, e.recipient))
        elif isinstance(e, ChatFinished):
            out.append(("finished", e.reason, e.error))
        elif isinstance(e, WorkerFailed):
            out.append(("failed", e.kind))
    return out


@pytest.mark.parametrize("model", ["vllm-reasoning-content", "vllm-reasoning", "llama-reasoning-content"])
def test_remote_reply_reaches_the_window_as_a_local_one_does(server: RecordedServer, model: str) -> None:
    local = run([LoadModel(1, Path("/m")), chat()], FakeFactory())
    remote = run([load_remote(server, model), chat()], default_engine_factory)
    assert shown(remote) == shown(local)
    ready = next(e for e in remote if isinstance(e, ModelReady))
    assert ready.info.remote_host == f"127.0.0.1:{server.port}" and ready.info.name == model
    assert ready.info.path == RemoteTarget("s1", server.url, model).pseudo_path


def test_a_remote_tool_call_reaches_the_window_as_a_local_one_does(server: RecordedServer) -> None:
    local_engine = FakeEngine(final=[], tool_call=("functions.get_weather", ['{"city":', ' "Oslo"}']),
                              finish_reason="tool_call")
    local = run([LoadModel(1, Path("/m")), chat()], FakeFactory(local_engine))
    remote = run([load_remote(server, "vllm-tool-call"), chat()], default_engine_factory)
    assert shown(remote) == shown(local)


def test_no_reasoning_note_travels_with_chat_finished(server: RecordedServer) -> None:
    events = run([load_remote(server, "vllm-no-reasoning"), chat()], default_engine_factory)
    fin = next(e for e in events if isinstance(e, ChatFinished))
    assert fin.reason == "stop" and "Reasoning was not available" in (fin.note or "")


def test_stop_through_the_worker(server: RecordedServer) -> None:
    cancel = threading.Event()

    def stop_after_first_delta(e: object) -> None:
        if isinstance(e, ChatDelta):
            cancel.set()

    events = run([load_remote(server, "vllm-slow"), chat()], default_engine_factory, cancel, stop_after_first_delta)
    assert [e.reason for e in events if isinstance(e, ChatFinished)] == ["cancelled"]
    assert len([e for e in events if isinstance(e, ChatDelta)]) <= 2
    assert server.client_left.wait(3)


def test_server_errors_are_user_errors_in_the_window(server: RecordedServer) -> None:
    events = run([load_remote(server, "gpt-oss-999b")], default_engine_factory)
    failed = [e for e in events if isinstance(e, WorkerFailed)]
    assert failed and failed[0].kind == "user" and "does not serve “gpt-oss-999b”" in failed[0].message
    events = run([load_remote(server, "vllm-context-error"), chat()], default_engine_factory)
    assert ("failed", "user") in shown(events)
    fin = next(e for e in events if isinstance(e, ChatFinished))
    assert fin.reason == "error" and "too long for the model's context" in fin.error


def test_the_key_is_read_from_the_keyring_by_the_worker(_keyring) -> None:  # noqa: ANN001
    from app.remote.keys import default_keys

    with RecordedServer(recordings(), api_key="sk-worker") as server:
        target = RemoteTarget("keyed1", server.url, "vllm-reasoning")
        assert run([LoadModel(1, target.pseudo_path, remote=target)], default_engine_factory)[-1].kind == "user"
        default_keys().set("keyed1", "sk-worker")
        events = run([LoadModel(1, target.pseudo_path, remote=target), chat()], default_engine_factory)
        assert [e.reason for e in events if isinstance(e, ChatFinished)] == ["stop"]
        default_keys().delete("keyed1")
