"""The worker's Qt-free serve() loop with a remote model: the window gets the same events a local
run gives it (the recorded streams carry the same reply as tests/app/fakes.py's FakeEngine)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest

from app.messages import ChatFinished, ChatUpdate, LoadFailed, LoadModel, ModelReady, Shutdown, StartChat, WorkerFailed
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
    """What the window acts on: each streamed piece's channel, text and recipient (from the worker's
    ChatUpdates; with coalesce_seconds=0 each piece goes out alone), and how the reply ended."""
    out: list[tuple] = []
    for e in events:
        if isinstance(e, ChatUpdate):
            out.extend(("delta", p.channel, p.text, p.recipient) for p in e.pieces)
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
    assert [s[1] for s in shown(remote) if s[0] == "delta"][:1] == ["analysis"] and ("finished", "stop", None) in shown(remote)
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

    def stop_after_first_piece(e: object) -> None:
        if isinstance(e, ChatUpdate) and e.pieces:
            cancel.set()

    events = run([load_remote(server, "vllm-slow"), chat()], default_engine_factory, cancel, stop_after_first_piece)
    assert [e.reason for e in events if isinstance(e, ChatFinished)] == ["cancelled"]
    assert len([p for e in events if isinstance(e, ChatUpdate) for p in e.pieces]) <= 2
    assert server.client_left.wait(3)


def test_live_tokens_per_second_of_a_remote_reply(server: RecordedServer) -> None:
    """The remote engine sends DecodeProgress, so the one coalescer's ChatUpdate carries live stats."""
    cancel = threading.Event()
    seen: list = []

    def stop_once_rated(e: object) -> None:
        if isinstance(e, ChatUpdate) and e.stats is not None and e.stats.completion_tokens >= 5:
            seen.append(e.stats)
            cancel.set()

    events = run([load_remote(server, "vllm-slow"), chat()], default_engine_factory, cancel, stop_once_rated)
    assert seen, "no ChatUpdate with decode stats"
    stats = seen[0]
    assert stats.phase == "decode" and stats.decode_elapsed_s >= 0.2
    # 20 ms a piece on the server: at most ~50 pieces/s arrive (slower on a busy machine)
    assert 0 < stats.tokens_per_s < 80
    assert stats.prompt_tokens == 0      # a server tells the prompt's length only at the end
    assert [e.reason for e in events if isinstance(e, ChatFinished)] == ["cancelled"]


def test_server_errors_are_user_errors_in_the_window(server: RecordedServer) -> None:
    events = run([load_remote(server, "gpt-oss-999b")], default_engine_factory)
    failed = [e for e in events if isinstance(e, LoadFailed)]
    assert failed and failed[0].kind == "user" and "does not serve “gpt-oss-999b”" in failed[0].message
    assert not failed[0].model_kept      # nothing was loaded before
    events = run([load_remote(server, "vllm-context-error"), chat()], default_engine_factory)
    assert ("failed", "user") in shown(events)
    fin = next(e for e in events if isinstance(e, ChatFinished))
    assert fin.reason == "error" and "too long for the model's context" in fin.error
    assert fin.error_kind == "context_full" and not fin.is_bug


def test_the_key_is_read_from_the_keyring_by_the_worker(_keyring) -> None:  # noqa: ANN001
    from app.remote.keys import default_keys

    with RecordedServer(recordings(), api_key="sk-worker") as server:
        target = RemoteTarget("keyed1", server.url, "vllm-reasoning")
        assert run([LoadModel(1, target.pseudo_path, remote=target)], default_engine_factory)[-1].kind == "user"
        default_keys().set("keyed1", "sk-worker")
        events = run([LoadModel(1, target.pseudo_path, remote=target), chat()], default_engine_factory)
        assert [e.reason for e in events if isinstance(e, ChatFinished)] == ["stop"]
        default_keys().delete("keyed1")


def local_or_remote(local: FakeFactory):  # noqa: ANN201
    """The worker's factory with a fake in place of the local engine (the remote one is real)."""
    def factory(request: LoadModel, progress):  # noqa: ANN001, ANN202
        return default_engine_factory(request, progress) if request.remote is not None else local(request, progress)
    return factory


def test_a_server_that_fails_leaves_the_loaded_model_loaded(server: RecordedServer) -> None:
    """The remote load connects first: a server that does not serve the model (or does not answer) is
    refused while the local model stays loaded and keeps chatting."""
    local = FakeFactory()
    events = run([LoadModel(1, Path("/m")), load_remote(server, "gpt-oss-999b", rid=2), chat(3)],
                 local_or_remote(local))
    failed = [e for e in events if isinstance(e, LoadFailed)]
    assert len(failed) == 1 and failed[0].model_kept and failed[0].kind == "user"
    stages = [e.stage for e in events if getattr(e, "request_id", None) == 2 and hasattr(e, "stage")]
    assert "Unloading the previous model" not in stages and stages[0] == "Connecting to the server"
    assert [e.reason for e in events if isinstance(e, ChatFinished)] == ["stop"]   # the fake still answers

    unreachable = RemoteTarget("s1", "http://127.0.0.1:9/v1", "vllm-reasoning")   # discard port: nobody there
    events = run([LoadModel(1, Path("/m")), LoadModel(2, unreachable.pseudo_path, remote=unreachable)],
                 local_or_remote(local))
    assert [e.model_kept for e in events if isinstance(e, LoadFailed)] == [True]
    assert not any(getattr(e, "stage", "") == "Unloading the previous model" for e in events)


def test_a_remote_model_replaces_the_local_one_once_connected(server: RecordedServer) -> None:
    local = FakeFactory()
    events = run([LoadModel(1, Path("/m")), load_remote(server, "vllm-reasoning", rid=2), chat(3)],
                 local_or_remote(local))
    stages = [e.stage for e in events if getattr(e, "request_id", None) == 2 and hasattr(e, "stage")]
    assert stages.index("Unloading the previous model") > stages.index("Ready")   # connected first
    assert local.engine.closed
    ready = [e for e in events if isinstance(e, ModelReady)]
    assert ready[-1].info.remote_host == f"127.0.0.1:{server.port}"


def test_cancelling_a_remote_load_keeps_the_loaded_model(server: RecordedServer) -> None:
    local = FakeFactory()
    q: queue.SimpleQueue = queue.SimpleQueue()
    events: list = []
    cancel_load = threading.Event()

    def emit(e: object) -> None:
        events.append(e)
        if isinstance(e, ModelReady) and e.request_id == 1:
            cancel_load.set()          # the user cancels the next load (the remote one) at once

    for r in (LoadModel(1, Path("/m")), load_remote(server, "vllm-reasoning", rid=2), Shutdown()):
        q.put(r)
    serve(q, emit, threading.Event(), local_or_remote(local), coalesce_seconds=0.0, cancel_load=cancel_load)
    failed = [e for e in events if isinstance(e, LoadFailed)]
    assert [(e.kind, e.model_kept) for e in failed] == [("cancelled", True)]
    assert not any(getattr(e, "stage", "") == "Unloading the previous model" for e in events)


def test_cancel_while_a_silent_server_is_asked_does_not_wait_for_it() -> None:
    """The server takes its time to list its models: Cancel ends the load at once, the model in use
    stays, and the engine that arrives later is closed (not used)."""
    import time

    gate = threading.Event()
    local = FakeFactory()
    with RecordedServer(recordings(), models_gate=gate) as slow:
        q: queue.SimpleQueue = queue.SimpleQueue()
        events: list = []
        cancel_load = threading.Event()
        cancelled_at: list[float] = []

        failed_at: list[float] = []

        def emit(e: object) -> None:
            events.append(e)
            if getattr(e, "request_id", None) == 2 and str(getattr(e, "stage", "")).startswith("Connecting to"):
                cancelled_at.append(time.monotonic())
                cancel_load.set()
            if isinstance(e, LoadFailed):
                failed_at.append(time.monotonic())

        for r in (LoadModel(1, Path("/m")), load_remote(slow, "vllm-reasoning", rid=2), chat(3), Shutdown()):
            q.put(r)
        thread = threading.Thread(target=serve, args=(q, emit, threading.Event(), local_or_remote(local)),
                                  kwargs={"coalesce_seconds": 0.0, "cancel_load": cancel_load})
        thread.start()
        thread.join(5)
        assert not thread.is_alive()
        failed = [e for e in events if isinstance(e, LoadFailed)]
        assert [(e.kind, e.model_kept) for e in failed] == [("cancelled", True)]
        assert cancelled_at and failed_at[0] - cancelled_at[0] < 1.0     # not the server's 10 s
        assert [e.reason for e in events if isinstance(e, ChatFinished)] == ["stop"]   # the local model answered
        assert not gate.is_set()                       # all that happened while the server still said nothing
        gate.set()
