"""serve(): the worker loop without Qt, driven by a list as `emit` and a FakeEngine."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from app.messages import (
    ChatFinished,
    ChatUpdate,
    LoadFailed,
    ChatStarted,
    LoadModel,
    LoadProgress,
    ModelReady,
    ModelUnloaded,
    Shutdown,
    StartChat,
    UnloadModel,
    WorkerFailed,
)
from app.worker import serve
from engine.errors import ContextFull, OutOfMemory
from engine.types import GenerationParams, Message
from tests.app.fakes import DEFAULT_ANALYSIS, DEFAULT_FINAL, FakeEngine, FakeFactory

HELLO = (Message("user", "hello"),)


def run(requests: list, factory: FakeFactory, cancel: threading.Event | None = None,
        coalesce: float = 0.0) -> list:
    q: queue.SimpleQueue = queue.SimpleQueue()
    for r in requests + [Shutdown()]:
        q.put(r)
    events: list = []
    serve(q, events.append, cancel or threading.Event(), factory, coalesce_seconds=coalesce, check=factory.check)
    return events


def pieces(events: list) -> list:
    """Every text piece the updates carried, in order (engine.types.Delta)."""
    return [p for e in events if isinstance(e, ChatUpdate) for p in e.pieces]


def chat(rid: int, conv: str = "c1") -> StartChat:
    return StartChat(rid, conv, HELLO, GenerationParams())


def test_load_chat_unload_order_and_text() -> None:
    factory = FakeFactory()
    events = run([LoadModel(1, Path("/m/x"), "cpu", 4096), chat(2), UnloadModel(3)], factory)
    kinds = [type(e) for e in events]
    assert kinds[:3] == [LoadProgress, LoadProgress, ModelReady]
    assert [e.stage for e in events[:2]] == ["Checking the model files", "Reading weights"]
    assert events[2].info.path == Path("/m/x") and events[2].info.max_context == 4096
    assert kinds[3] is ChatStarted
    deltas = pieces(events)
    analysis = "".join(d.text for d in deltas if d.channel == "analysis")
    final = "".join(d.text for d in deltas if d.channel == "final")
    assert analysis == "".join(DEFAULT_ANALYSIS)
    assert final.startswith("Hello! Here is code") and final.endswith("(reply 1)")
    # analysis strictly before final: the channels never interleave in this script
    channels = [d.channel for d in deltas]
    assert channels == sorted(channels)
    fin = [e for e in events if isinstance(e, ChatFinished)]
    assert len(fin) == 1 and fin[0].reason == "stop" and fin[0].request_id == 2
    assert isinstance(events[-1], ModelUnloaded) and factory.engine.closed
    assert factory.requests[0].device == "cpu"


def test_deltas_are_coalesced_per_channel() -> None:
    events = run([LoadModel(1, Path("/m")), chat(2)], FakeFactory(), coalesce=10.0)
    updates = [e for e in events if isinstance(e, ChatUpdate)]
    # huge interval: the prefill's progress and the first piece of each channel go out at once; the
    # rest waits for the end, merged per channel (one worker coalescer; the window renders each update)
    assert [[p.channel for p in u.pieces] for u in updates] == [[], ["analysis"], ["analysis", "final"], ["final"]]
    assert "".join(p.text for p in pieces(events) if p.channel == "analysis") == "".join(DEFAULT_ANALYSIS)
    assert updates[0].stats.phase == "prefill" and updates[-1].stats.phase == "decode"
    assert updates[-1].stats.completion_tokens == len(DEFAULT_ANALYSIS) + len(DEFAULT_FINAL)


def test_cancel_mid_stream_finishes_cancelled() -> None:
    engine = FakeEngine(gate=threading.Event())
    cancel = threading.Event()
    q: queue.SimpleQueue = queue.SimpleQueue()
    events: list = []

    def emit(e: object) -> None:
        events.append(e)
        if isinstance(e, ChatUpdate) and e.pieces:  # stop after the first streamed piece
            cancel.set()
        engine.gate.set()

    q.put(LoadModel(1, Path("/m")))
    q.put(chat(2))
    q.put(Shutdown())
    serve(q, emit, cancel, FakeFactory(engine), coalesce_seconds=0.0)
    fin = [e for e in events if isinstance(e, ChatFinished)]
    assert fin[0].reason == "cancelled"
    assert len(pieces(events)) == 1


def test_cancel_is_cleared_when_the_next_chat_starts() -> None:
    cancel = threading.Event()
    cancel.set()  # a stop pressed for an earlier turn must not kill the next one
    events = run([LoadModel(1, Path("/m")), chat(2)], FakeFactory(), cancel=cancel)
    assert [e for e in events if isinstance(e, ChatFinished)][0].reason == "stop"


def test_engine_error_on_load_is_a_user_message_and_thread_survives() -> None:
    factory = FakeFactory(fail=OutOfMemory("needs 13 GB, 8 GB free"))
    events = run([LoadModel(1, Path("/m")), chat(2)], factory)
    [load_failed] = [e for e in events if isinstance(e, LoadFailed)]
    assert load_failed.kind == "user" and load_failed.request_id == 1 and "13 GB" in load_failed.message
    assert not load_failed.model_kept
    # the chat after a failed load is refused politely, and its turn still ends
    failed = [e for e in events if isinstance(e, WorkerFailed)]
    assert failed[0].request_id == 2 and "No model" in failed[0].message
    assert [e for e in events if isinstance(e, ChatFinished)][0].reason == "error"


def test_bug_in_engine_is_reported_with_traceback() -> None:
    factory = FakeFactory(FakeEngine(raise_on_chat=ZeroDivisionError("boom")))
    events = run([LoadModel(1, Path("/m")), chat(2), chat(3)], factory)
    failed = [e for e in events if isinstance(e, WorkerFailed)]
    assert failed[0].kind == "bug" and "ZeroDivisionError" in failed[0].details
    finished = [e for e in events if isinstance(e, ChatFinished)]
    assert [f.request_id for f in finished] == [2, 3] and all(f.reason == "error" for f in finished)


def test_engine_error_raised_before_first_event() -> None:
    factory = FakeFactory(FakeEngine(raise_on_chat=ContextFull(9000, 8192)))
    events = run([LoadModel(1, Path("/m")), chat(2)], factory)
    failed = [e for e in events if isinstance(e, WorkerFailed)]
    assert failed[0].kind == "user" and "8,192" in failed[0].message


def test_finished_error_from_engine_becomes_user_failure() -> None:
    factory = FakeFactory(FakeEngine(error_finish="stray channel token"))
    events = run([LoadModel(1, Path("/m")), chat(2)], factory)
    fin = [e for e in events if isinstance(e, ChatFinished)][0]
    assert fin.reason == "error" and fin.error == "stray channel token"
    assert any(isinstance(e, WorkerFailed) and e.kind == "user" for e in events)


def test_shutdown_closes_engine() -> None:
    factory = FakeFactory()
    run([LoadModel(1, Path("/m"))], factory)
    assert factory.engine.closed


def test_session_reused_within_a_conversation_only() -> None:
    sessions: list = []
    engine = FakeEngine()
    original = engine.new_session

    def new_session() -> object:
        s = original()
        sessions.append(s)
        return s

    engine.new_session = new_session  # type: ignore[method-assign]
    run([LoadModel(1, Path("/m")), chat(2, "a"), chat(3, "a"), chat(4, "b")], FakeFactory(engine))
    assert len(sessions) == 2


def test_engine_worker_shutdown_reports_a_thread_stuck_in_a_load(qtbot) -> None:  # noqa: ANN001
    from app.worker import EngineWorker

    release = threading.Event()
    started = threading.Event()

    def slow_factory(request: LoadModel, progress) -> FakeEngine:  # noqa: ANN001
        started.set()
        release.wait(10)
        return FakeEngine()

    worker = EngineWorker(slow_factory)
    worker.start()
    worker.submit(LoadModel(1, Path("/m")))
    assert started.wait(5)
    assert worker.shutdown(timeout_ms=100) is False  # main() then exits without tearing the thread down
    release.set()
    assert worker._thread.wait(5000)  # it does finish once the load returns (Shutdown is queued)


def test_the_first_piece_after_a_channel_change_is_not_held_until_the_next_token() -> None:
    """A pause after the answer's first piece (a slow model) must not keep it in the worker's buffer."""
    released = threading.Event()
    seen_final = threading.Event()

    class Pausing(FakeEngine):
        def _stream(self, should_stop):  # noqa: ANN001, ANN202
            from engine.types import Delta, Finished, Usage

            yield Delta("analysis", "thinking")
            yield Delta("final", "Hello")
            released.wait(5)  # the next token is slow to come
            yield Finished("stop", Usage())

    def emit(e: object) -> None:
        if isinstance(e, ChatUpdate) and any(p.channel == "final" for p in e.pieces):
            seen_final.set()

    q: queue.SimpleQueue = queue.SimpleQueue()
    for r in (LoadModel(1, Path("/m")), chat(2), Shutdown()):
        q.put(r)
    worker = threading.Thread(target=serve, args=(q, emit, threading.Event(), FakeFactory(Pausing())),
                              kwargs={"coalesce_seconds": 10.0})
    worker.start()
    try:
        assert seen_final.wait(2), "the first answer piece waited for the next token"
    finally:
        released.set()
        worker.join(5)


def test_a_tool_call_keeps_its_recipient_and_is_never_merged_with_other_text() -> None:
    """Same channel, different recipient (a preamble, then the call): two deltas, each with its recipient."""
    from engine.types import Delta, Finished, Usage

    class Calling(FakeEngine):
        def _stream(self, should_stop):  # noqa: ANN001, ANN202
            yield Delta("commentary", "Checking ")
            yield Delta("commentary", "the weather.")
            yield Delta("commentary", '{"city":', "functions.get_weather")
            yield Delta("commentary", ' "Oslo"}', "functions.get_weather")
            yield Finished("tool_call", Usage())

    events = run([LoadModel(1, Path("/m")), chat(2)], FakeFactory(Calling()), coalesce=10.0)
    deltas = [(e.recipient, e.text) for e in pieces(events)]
    merged: dict[str | None, str] = {}
    for recipient, text in deltas:
        merged[recipient] = merged.get(recipient, "") + text
    assert merged == {None: "Checking the weather.", "functions.get_weather": '{"city": "Oslo"}'}
    assert [r for r, _ in deltas] == sorted([r for r, _ in deltas], key=lambda r: r is not None)   # never interleaved
    assert [e for e in events if isinstance(e, ChatFinished)][0].reason == "tool_call"


def test_a_folder_that_is_not_a_model_is_refused_before_the_loaded_model_is_unloaded() -> None:
    from engine.errors import ModelFilesError

    factory = FakeFactory()
    q: queue.SimpleQueue = queue.SimpleQueue()
    events: list = []
    q.put(LoadModel(1, Path("/m/good")))

    def emit(e: object) -> None:
        events.append(e)
        if isinstance(e, ModelReady) and e.request_id == 1:
            factory.refuse = ModelFilesError("model-00001 is truncated", path="/m/bad/model-00001.safetensors")
            q.put(LoadModel(2, Path("/m/bad")))
            q.put(chat(3))
            q.put(Shutdown())

    serve(q, emit, threading.Event(), factory, coalesce_seconds=0.0, check=factory.check)
    [failed] = [e for e in events if isinstance(e, LoadFailed)]
    assert failed.request_id == 2 and failed.kind == "user" and failed.model_kept and "truncated" in failed.message
    assert len(factory.requests) == 1                            # the bad folder never reached the loader
    assert [e.reason for e in events if isinstance(e, ChatFinished)] == ["stop"]   # the old model still answers
    assert not any(isinstance(e, LoadProgress) and "Unloading" in e.stage for e in events)


def test_a_load_can_be_cancelled_at_its_next_stage() -> None:
    cancel_load = threading.Event()
    factory = FakeFactory()

    def emit(e: object) -> None:
        events.append(e)
        if isinstance(e, LoadProgress) and e.stage == "Checking the model files":
            cancel_load.set()

    events: list = []
    q: queue.SimpleQueue = queue.SimpleQueue()
    for r in (LoadModel(1, Path("/m")), Shutdown()):
        q.put(r)
    serve(q, emit, threading.Event(), factory, coalesce_seconds=0.0, check=factory.check, cancel_load=cancel_load)
    assert [type(e) for e in events] == [LoadProgress, LoadFailed] and events[-1].kind == "cancelled"
    assert factory.requests == []


def test_updates_carry_prefill_progress_then_live_decode_stats() -> None:
    engine = FakeEngine(prompt_tokens=600, prefill_chunk=256)
    events = run([LoadModel(1, Path("/m")), chat(2)], FakeFactory(engine))
    stats = [e.stats for e in events if isinstance(e, ChatUpdate) and e.stats is not None]
    prefill = [s for s in stats if s.phase == "prefill"]
    assert sorted({s.prefill_done for s in prefill}) == [256, 512, 600] and prefill[0].prefill_total == 600
    assert prefill[0].prompt_tokens == 600 and 0 < prefill[0].prefill_fraction < 1
    decode = [s for s in stats if s.phase == "decode"]
    assert sorted({s.completion_tokens for s in decode}) == list(range(1, len(DEFAULT_ANALYSIS) + len(DEFAULT_FINAL) + 1))
    assert decode[-1].context_tokens == 600 + decode[-1].completion_tokens


def test_a_bug_in_the_reply_is_reported_as_a_bug() -> None:
    from engine.types import Finished, Usage

    class Broken(FakeEngine):
        def _stream(self, should_stop):  # noqa: ANN001, ANN202
            yield Finished("error", Usage(), "Internal error: KeyError: 3", "bug")

    events = run([LoadModel(1, Path("/m")), chat(2)], FakeFactory(Broken()))
    fin = [e for e in events if isinstance(e, ChatFinished)][0]
    assert fin.error_kind == "bug" and fin.is_bug
    assert [e.kind for e in events if isinstance(e, WorkerFailed)] == ["bug"]
