"""The remote engine against recorded vLLM- and llama-server-shaped streams on loopback."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import pytest

from app.remote.engine import RemoteEngine
from app.remote.errors import ModelNotFound, Unreachable
from app.remote.target import RemoteTarget
from engine.types import Delta, Finished, GenerationParams, Message
from tests.app.fakes import DEFAULT_ANALYSIS
from tests.app.recorded_server import Recording, RecordedServer
from tests.app.recorded_streams import FINAL, recordings

HELLO = (Message("user", "hello"),)


@pytest.fixture
def server():
    with RecordedServer(recordings()) as s:
        yield s


def engine_for(server: RecordedServer, model: str, key: str | None = None) -> RemoteEngine:
    return RemoteEngine(RemoteTarget("s1", server.url, model), key)


def run(engine: RemoteEngine, should_stop=lambda: False, messages=HELLO, params=GenerationParams()):  # noqa: ANN001, ANN201
    events = list(engine.chat(engine.new_session(), messages, params, should_stop))
    engine.close()
    return events


def split(events: list) -> tuple[str, str, list[tuple[str | None, str]], Finished]:
    assert isinstance(events[-1], Finished) and sum(isinstance(e, Finished) for e in events) == 1
    deltas = [e for e in events if isinstance(e, Delta)]
    analysis = "".join(d.text for d in deltas if d.channel == "analysis")
    final = "".join(d.text for d in deltas if d.channel == "final" and d.recipient is None)
    calls = [(d.recipient, d.text) for d in deltas if d.recipient]
    return analysis, final, calls, events[-1]


@pytest.mark.parametrize("model", ["vllm-reasoning-content", "vllm-reasoning", "llama-reasoning-content"])
def test_reasoning_and_answer_arrive_as_a_local_run_streams_them(server: RecordedServer, model: str) -> None:
    events = run(engine_for(server, model))
    analysis, final, calls, fin = split(events)
    assert analysis == "".join(DEFAULT_ANALYSIS) and final == "".join(FINAL) and calls == []
    # piece for piece, in order: all reasoning, then the answer (as the local engine streams them)
    assert [(e.channel, e.text) for e in events[:-1]] == \
        [("analysis", t) for t in DEFAULT_ANALYSIS] + [("final", t) for t in FINAL]
    assert fin.reason == "stop" and fin.error is None and fin.note is None
    assert fin.usage.prompt_tokens == 78
    assert fin.usage.completion_tokens == (9 if model.startswith("vllm") else len(DEFAULT_ANALYSIS) + len(FINAL))
    assert fin.usage.reused_tokens == (64 if model.startswith("vllm") else 0)
    assert fin.usage.time_to_first_token_s > 0


@pytest.mark.parametrize("model", ["vllm-no-reasoning", "llama-no-reasoning"])
def test_a_server_without_reasoning_says_so_on_the_reply(server: RecordedServer, model: str) -> None:
    analysis, final, _, fin = split(run(engine_for(server, model)))
    assert analysis == "" and final == "".join(FINAL)
    assert fin.reason == "stop"
    assert fin.note is not None and "Reasoning was not available" in fin.note and f"127.0.0.1:{server.port}" in fin.note


@pytest.mark.parametrize("model", ["vllm-tool-call", "llama-tool-call"])
def test_tool_call_fragments_become_one_call_with_its_recipient(server: RecordedServer, model: str) -> None:
    analysis, _, calls, fin = split(run(engine_for(server, model)))
    assert analysis == "".join(DEFAULT_ANALYSIS)
    assert {r for r, _ in calls} == {"functions.get_weather"}
    assert "".join(t for _, t in calls) == '{"city": "Oslo"}'
    assert fin.reason == "tool_call" and fin.note is None


def test_a_stream_cut_off_mid_reply_keeps_what_came_and_says_the_connection_was_lost(server: RecordedServer) -> None:
    analysis, final, _, fin = split(run(engine_for(server, "vllm-dropped")))
    assert analysis == "".join(DEFAULT_ANALYSIS) and final == "".join(FINAL[:2])
    assert fin.reason == "error" and "lost in the middle of the reply" in fin.error
    assert fin.error_kind == "user" and not fin.is_bug     # the window shows it as the user's, not a bug
    assert f"127.0.0.1:{server.port}" in fin.error


def test_an_error_sent_inside_the_stream_ends_the_reply_with_it(server: RecordedServer) -> None:
    analysis, _, _, fin = split(run(engine_for(server, "vllm-error-mid-stream")))
    assert analysis == "The user"
    assert fin.reason == "error" and "CUDA out of memory while decoding" in fin.error and "failed" in fin.error


def test_a_server_that_ignores_stream_still_gives_reasoning_and_answer(server: RecordedServer) -> None:
    analysis, final, _, fin = split(run(engine_for(server, "not-streaming")))
    assert (analysis, final, fin.reason) == ("Say hi.", "Hi there.", "stop")
    assert fin.usage.completion_tokens == 6


@pytest.mark.parametrize("model", ["vllm-context-error", "llama-context-error"])
def test_context_too_long_in_lantern_words_with_the_servers(server: RecordedServer, model: str) -> None:
    _, _, _, fin = split(run(engine_for(server, model)))
    assert fin.reason == "error" and "too long for the model's context" in fin.error
    assert fin.error_kind == "context_full"
    said = "maximum context length is 8192" if model.startswith("vllm") else "exceeds the available context size"
    assert said in fin.error


def test_unknown_model_and_wrong_address(server: RecordedServer) -> None:
    _, _, _, fin = split(run(engine_for(server, "gpt-oss-999b")))
    assert fin.reason == "error" and "does not serve a model named “gpt-oss-999b”" in fin.error
    wrong = RemoteEngine(RemoteTarget("s1", server.url.replace("/v1", "/api"), "vllm-reasoning"))
    _, _, _, fin = split(run(wrong))
    assert "has no OpenAI-compatible API" in fin.error and "/v1" in fin.error


def test_missing_and_wrong_api_key() -> None:
    with RecordedServer(recordings(), api_key="sk-right") as server:
        _, _, _, fin = split(run(engine_for(server, "vllm-reasoning")))
        assert fin.reason == "error" and "needs an API key (401)" in fin.error
        _, _, _, fin = split(run(engine_for(server, "vllm-reasoning", key="sk-wrong")))
        assert "refused the API key (401)" in fin.error
        analysis, _, _, fin = split(run(engine_for(server, "vllm-reasoning", key="sk-right")))
        assert fin.reason == "stop" and analysis
        assert server.requests[-1].headers["Authorization"] == "Bearer sk-right"


def test_unreachable_server_is_a_readable_error() -> None:
    with socket.socket() as s:       # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, _, _, fin = split(run(RemoteEngine(RemoteTarget("s1", f"http://127.0.0.1:{port}/v1", "m"))))
    assert fin.reason == "error" and f"Cannot reach 127.0.0.1:{port}" in fin.error and fin.error_kind == "user"
    with pytest.raises(Unreachable):
        RemoteEngine.connect(RemoteTarget("s1", f"http://127.0.0.1:{port}/v1", "m"))


def test_stop_cancels_promptly_and_closes_the_connection(server: RecordedServer) -> None:
    stop = threading.Event()
    engine = engine_for(server, "vllm-slow")
    events: list = []
    stopped_at = None
    for event in engine.chat(engine.new_session(), HELLO, GenerationParams(), stop.is_set):
        events.append(event)
        if len(events) == 3:
            stop.set()
            stopped_at = time.monotonic()
    assert stopped_at is not None and time.monotonic() - stopped_at < 0.5
    assert isinstance(events[-1], Finished) and events[-1].reason == "cancelled"
    assert len(events) == 4                     # nothing streamed after Stop
    assert server.client_left.wait(3), "the server kept writing to a client that had stopped"
    engine.close()


def test_stop_while_the_server_is_silent_does_not_wait_for_it() -> None:
    slow = Recording(("data: {}\n\n",) * 3, delay_s=5.0)       # a long prefill: nothing for seconds
    with RecordedServer({"m": slow}) as server:
        stop = threading.Event()
        engine = engine_for(server, "m")
        threading.Timer(0.2, stop.set).start()
        start = time.monotonic()
        events = list(engine.chat(engine.new_session(), HELLO, GenerationParams(), stop.is_set))
        assert time.monotonic() - start < 1.5
        assert [type(e) for e in events] == [Finished] and events[0].reason == "cancelled"
        engine.close()


def test_the_request_carries_the_conversation_effort_and_sampling(server: RecordedServer) -> None:
    messages = (Message("developer", "Be brief."), Message("user", "hi"),
                Message("assistant", "thinking about hi", channel="analysis"),
                Message("assistant", "Hello!", channel="final"), Message("user", "again"))
    run(engine_for(server, "vllm-reasoning"), messages=messages,
        params=GenerationParams(temperature=0.5, top_p=0.9, max_tokens=321, reasoning_effort="high", seed=7))
    body = server.chat_bodies()[-1]
    assert body["model"] == "vllm-reasoning" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.5, 0.9, 321, 7)
    assert body["reasoning_effort"] == "high" and body["chat_template_kwargs"] == {"reasoning_effort": "high"}
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "again"}]
    assert "tools" not in body


def test_tools_in_the_parameters_are_sent(server: RecordedServer) -> None:
    """GenerationParams.tools / tool_choice (the engine's tool support; a stand-in where it has not landed)."""
    @dataclass(frozen=True)
    class WithTools(GenerationParams):
        tools: tuple = ()
        tool_choice: str = "auto"

    @dataclass(frozen=True)
    class Tool:
        name: str
        description: str = ""
        parameters: object = None

    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = (Tool("get_weather", "Weather in a city", params), Tool("now"))
    run(engine_for(server, "vllm-tool-call"), params=WithTools(tools=tools))
    body = server.chat_bodies()[-1]
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": params}},
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]
    assert body["tool_choice"] == "auto"
    run(engine_for(server, "vllm-tool-call"), params=WithTools(tools=tools, tool_choice="none"))
    assert "tools" not in server.chat_bodies()[-1]


def test_connect_checks_the_model_and_reads_its_context(server: RecordedServer) -> None:
    progress: list = []
    engine = RemoteEngine.connect(RemoteTarget("s1", server.url, "vllm-reasoning-content"), None,
                                  lambda m, f: progress.append((m, f)))
    info = engine.info
    assert info.name == "vllm-reasoning-content" and info.max_context == 131072
    assert info.remote_host == f"127.0.0.1:{server.port}" and info.device == "remote"
    assert progress[0][0] == "Connecting to the server" and progress[-1][1] == 1.0
    engine.close()
    with pytest.raises(ModelNotFound, match="it offers: vllm-reasoning-content, vllm-reasoning"):
        RemoteEngine.connect(RemoteTarget("s1", server.url, "gpt-oss-999b"))


def test_no_note_once_the_server_has_shown_it_sends_reasoning() -> None:
    from tests.app.recorded_streams import vllm_stream

    with RecordedServer({"m": Recording(vllm_stream("reasoning")), "n": Recording(vllm_stream(None))}) as server:
        engine = RemoteEngine(RemoteTarget("s1", server.url, "m"))
        assert list(engine.chat(engine.new_session(), HELLO, GenerationParams()))[-1].note is None
        engine.target = RemoteTarget("s1", server.url, "n")     # same server, a reply without reasoning
        assert list(engine.chat(engine.new_session(), HELLO, GenerationParams()))[-1].note is None
        engine.close()
