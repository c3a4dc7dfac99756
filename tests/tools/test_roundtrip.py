"""The tool round trip: the model calls a tool, the tool runs, its result goes back, the reply goes on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from engine.tools.browser import LocalBrowser
from engine.tools.extract import ExtractedDocument
from engine.tools.index import DocumentIndex
from engine.tools.python_sandbox import PythonSession, SandboxLimits
from engine.tools.python_sandbox.isolation import no_isolation
from engine.tools.roundtrip import ToolBox, ToolCallFinished, ToolCallStarted, ToolLoop, messages_from_deltas
from engine.types import Delta, Finished, GenerationParams, Message
from tests.tools.harmony_fake import HarmonyScriptEngine

SEARCH_CALL = ('<|channel|>analysis<|message|>I should search the documents.<|end|>'
               '<|start|>assistant<|channel|>analysis to=browser.search code<|message|>'
               '{"query": "carry over"}<|call|>')
OPEN_CALL = '<|channel|>analysis to=browser.open code<|message|>{"id": 0}<|call|>'
PY_CALL = "<|channel|>analysis to=python code<|message|>import math\nprint(math.sqrt(9001))<|call|>"
FINAL = "<|channel|>analysis<|message|>Got it.<|end|><|start|>assistant<|channel|>final<|message|>" \
        "Five days carry over 【1†L3】.<|return|>"


@pytest.fixture
def index() -> DocumentIndex:
    idx = DocumentIndex()
    idx.add(ExtractedDocument(Path("leave.md"), "Leave policy", "markdown",
                              "# Leave\nUp to 5 unused days carry over to the next year."))
    return idx


def _run(engine: HarmonyScriptEngine, box: ToolBox, params: GenerationParams) -> tuple[ToolLoop, list]:
    loop = ToolLoop(engine, engine.new_session(), box)
    events = list(loop.run([Message("user", "How many leave days carry over?")], params))
    return loop, events


def test_browser_calls_run_and_the_reply_continues_without_a_full_prefill(index: DocumentIndex) -> None:
    engine = HarmonyScriptEngine([SEARCH_CALL, OPEN_CALL, FINAL])
    params = GenerationParams(builtin_tools=("browser",), current_date="2025-06-28")
    loop, events = _run(engine, ToolBox(browser=LocalBrowser(index)), params)

    started = [e for e in events if isinstance(e, ToolCallStarted)]
    done = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [e.call.recipient for e in started] == ["browser.search", "browser.open"]
    assert [e.call.content_type for e in started] == ["code", "code"]
    assert done[0].author == "browser.search" and done[0].output.startswith("[0] carry over\n")
    assert done[1].output.startswith("[1] Leave policy (https://docs.local/1/leave.md)")
    assert [e for e in events if isinstance(e, Finished)] == [events[-1]]
    assert events[-1].reason == "stop"
    final = "".join(e.text for e in events if isinstance(e, Delta) and e.channel == "final")
    assert final == "Five days carry over 【1†L3】."

    # the model saw its own call and the tool's reply, on the call's channel, with the content type kept
    third = engine.calls[2]
    assert third[-4:] == (
        Message("assistant", '{"query": "carry over"}', channel="analysis", recipient="browser.search",
                content_type="code"),
        Message("tool", done[0].output, channel="analysis", recipient="assistant", tool_name="browser.search"),
        Message("assistant", '{"id": 0}', channel="analysis", recipient="browser.open", content_type="code"),
        Message("tool", done[1].output, channel="analysis", recipient="assistant", tool_name="browser.open"),
    )
    # every round reuses at least the whole prompt of the round before: no full re-prefill
    assert len(loop.rounds) == 3
    for before, after in zip(loop.rounds, loop.rounds[1:]):
        assert after.reused_tokens >= before.prompt_tokens
    assert events[-1].usage.completion_tokens == sum(u.completion_tokens for u in loop.rounds)


def test_python_asks_first_and_a_refusal_goes_back_to_the_model(tmp_path: Path) -> None:
    asked = []
    session = PythonSession(tmp_path / "w", limits=SandboxLimits(timeout_s=10), isolation=no_isolation("test"))
    try:
        engine = HarmonyScriptEngine([PY_CALL, "<|channel|>final<|message|>About 94.87.<|return|>"])
        box = ToolBox(python=session, approve=lambda call: asked.append(call.arguments) or True)
        _, events = _run(engine, box, GenerationParams(builtin_tools=("python",)))
        done = [e for e in events if isinstance(e, ToolCallFinished)]
        assert asked == ["import math\nprint(math.sqrt(9001))"]
        assert done[0].author == "python" and done[0].output == "94.87360012142472\n" and done[0].status == "ok"
        assert engine.calls[1][-1] == Message("tool", "94.87360012142472\n", channel="analysis",
                                              recipient="assistant", tool_name="python")

        engine = HarmonyScriptEngine([PY_CALL, "<|channel|>final<|message|>I could not run it.<|return|>"])
        _, events = _run(engine, ToolBox(python=session, approve=lambda call: False),
                         GenerationParams(builtin_tools=("python",)))
        done = [e for e in events if isinstance(e, ToolCallFinished)]
        assert done[0].status == "denied" and "did not allow" in done[0].output
        assert events[-1].reason == "stop"
    finally:
        session.close()


def test_unknown_tools_and_disabled_tools_get_an_error_reply(index: DocumentIndex) -> None:
    calls = ['<|channel|>commentary to=functions.lookup <|constrain|>json<|message|>{"x": 1}<|call|>',
             PY_CALL, FINAL]
    engine = HarmonyScriptEngine(calls)
    _, events = _run(engine, ToolBox(browser=LocalBrowser(index)), GenerationParams(builtin_tools=("browser",)))
    done = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [d.status for d in done] == ["error", "error"]
    assert "no tool `functions.lookup`" in done[0].output and "browser.search" in done[0].output
    assert done[0].author == "functions.lookup" and done[1].author == "python"
    assert engine.calls[1][-2].content_type == "<|constrain|>json"
    assert events[-1].reason == "stop"


def test_the_number_of_rounds_is_bounded_and_stop_is_honoured(index: DocumentIndex) -> None:
    engine = HarmonyScriptEngine([SEARCH_CALL] * 10)
    loop = ToolLoop(engine, engine.new_session(), ToolBox(browser=LocalBrowser(index)), max_rounds=3)
    events = list(loop.run([Message("user", "q")], GenerationParams(builtin_tools=("browser",))))
    assert len(engine.calls) == 4 and events[-1].reason == "tool_call"
    stop = {"now": False}
    engine = HarmonyScriptEngine([SEARCH_CALL] * 3)

    def box_call(function: str, arguments: str) -> str:
        stop["now"] = True
        return "page"
    loop = ToolLoop(engine, engine.new_session(), ToolBox(browser=type("B", (), {"call": staticmethod(box_call)})()))
    events = list(loop.run([Message("user", "q")], GenerationParams(builtin_tools=("browser",)),
                           should_stop=lambda: stop["now"]))
    assert events[-1].reason == "cancelled" and len(engine.calls) == 1


def test_messages_are_rebuilt_from_deltas() -> None:
    deltas = [Delta("analysis", "a"), Delta("analysis", "b"), Delta("analysis", "{", "browser.find", "code"),
              Delta("analysis", "}", "browser.find", "code")]
    assert messages_from_deltas(deltas) == [
        Message("assistant", "ab", channel="analysis"),
        Message("assistant", "{}", channel="analysis", recipient="browser.find", content_type="code")]


def test_a_real_tiny_checkpoint_with_tools_on(tiny_model_dir: Path, index: DocumentIndex, tmp_path: Path) -> None:
    """Random output with both tools enabled: whatever the model writes, the loop ends cleanly, and a
    continued round after a tool result reuses the whole previous prompt from the KV cache."""
    from engine.api import Engine

    engine = Engine.load(tiny_model_dir, device="cpu", max_context=1024)
    try:
        session = engine.new_session()
        py = PythonSession(tmp_path / "w", limits=SandboxLimits(timeout_s=5), isolation=no_isolation("test"))
        box = ToolBox(browser=LocalBrowser(index), python=py, approve=lambda call: False)
        params = GenerationParams(builtin_tools=("browser", "python"), max_tokens=12, temperature=1.0, seed=3,
                                  reasoning_effort="low", current_date="2025-06-28")
        for seed in range(1):
            loop = ToolLoop(engine, session, box, max_rounds=2)
            events = list(loop.run([Message("user", f"Search my files {seed}")], dataclasses.replace(params, seed=seed)))
            assert sum(isinstance(e, Finished) for e in events) == 1
            assert events[-1].reason in ("stop", "length", "tool_call")
        # a round continued after a (scripted) tool call keeps the prefix
        messages = [Message("user", "How many days carry over?")]
        first = [e for e in engine.chat(session, messages, params) if isinstance(e, Finished)][0]
        call = Message("assistant", json.dumps({"query": "carry over"}), channel="analysis",
                       recipient="browser.search", content_type="code")
        result = Message("tool", LocalBrowser(index).call("search", call.content), channel="analysis",
                         recipient="assistant", tool_name="browser.search")
        second = [e for e in engine.chat(session, messages + [call, result], params) if isinstance(e, Finished)][0]
        assert second.reason != "error", second.error
        assert second.usage.reused_tokens >= first.usage.prompt_tokens
        assert second.usage.prompt_tokens > first.usage.prompt_tokens
        py.close()
    finally:
        engine.close()
