"""Terminal chat: commands, streaming output, reasoning display, Ctrl-C, argument parsing."""

from __future__ import annotations

import argparse
import io
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from engine.chat_cli import DIM, RESET, TerminalChat, add_parser, configure_parser
from engine.errors import ContextFull
from engine.types import ChatEvent, Delta, Finished, GenerationParams, Message, ModelInfo, Usage

INFO = ModelInfo(name="fake", path=Path("/nowhere"), layout="huggingface", num_layers=2, num_experts=4,
                 experts_per_token=2, params_total=1, params_active=1, bytes_on_disk=1, memory_needed_bytes=1,
                 max_context=4096, device="cpu", backend="cpu-reference")


class FakeEngine:
    """Replies with a fixed analysis + final; records what it was asked."""

    def __init__(self, on_token: Callable[[int], None] | None = None, n_final: int = 3) -> None:
        self.calls: list[tuple[list[Message], GenerationParams]] = []
        self.on_token = on_token
        self.n_final = n_final
        self.raise_context_full = False

    @property
    def info(self) -> ModelInfo:
        return INFO

    def new_session(self) -> object:
        return object()

    def chat(self, session: object, messages: Sequence[Message], params: GenerationParams,
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[ChatEvent]:
        if self.raise_context_full:
            raise ContextFull(5000, 4096)
        self.calls.append((list(messages), params))
        return self._events(should_stop)

    def _events(self, should_stop: Callable[[], bool]) -> Iterator[ChatEvent]:
        yield Delta("analysis", "secret thoughts")
        for i in range(self.n_final):
            if should_stop():
                yield Finished("cancelled", Usage(prompt_tokens=10, completion_tokens=i + 1))
                return
            if self.on_token is not None:
                self.on_token(i)
            yield Delta("final", f"w{i} ")
        yield Finished("stop", Usage(prompt_tokens=10, reused_tokens=4, completion_tokens=9, decode_tokens_per_s=12.5))


def _chat(engine: FakeEngine, **kw) -> tuple[TerminalChat, io.StringIO]:
    out = io.StringIO()
    return TerminalChat(engine, GenerationParams(reasoning_effort="low"), out=out, **kw), out


def _lines(*lines: str) -> Callable[[str], str]:
    it = iter(lines)

    def read(_prompt: str) -> str:
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None
    return read


def test_streams_answer_hides_reasoning_and_prints_speed() -> None:
    engine = FakeEngine()
    chat, out = _chat(engine, color=False)
    chat.run(_lines("hello", "/quit", "never read"))
    text = out.getvalue()
    assert "w0 w1 w2" in text
    assert "secret thoughts" not in text
    assert "12.5 tokens/s" in text and "4 reused" in text
    assert len(engine.calls) == 1
    # the reply (reasoning included, the renderer drops it later) is kept for the next turn
    assert [(m.role, m.channel) for m in chat.messages] == [("user", None), ("assistant", "analysis"),
                                                             ("assistant", "final")]


def test_show_reasoning_is_dimmed() -> None:
    chat, out = _chat(FakeEngine(), color=True, show_reasoning=True)
    chat.reply("hi")
    assert f"{DIM}[thinking] secret thoughts{RESET}" in out.getvalue()


def test_a_tool_call_is_labelled_with_its_recipient() -> None:
    class Calling(FakeEngine):
        def _events(self, should_stop: Callable[[], bool]) -> Iterator[ChatEvent]:
            yield Delta("commentary", '{"city":', "functions.get_weather")
            yield Delta("commentary", ' "Oslo"}', "functions.get_weather")
            yield Finished("tool_call", Usage(completion_tokens=5))

    chat, out = _chat(Calling(), color=False)
    chat.reply("weather?")
    text = out.getvalue()
    assert '[tool call to functions.get_weather] {"city": "Oslo"}' in text
    assert text.count("[tool call to") == 1 and "tried to call a tool" in text


def test_multi_turn_sends_history_and_reset_clears_it() -> None:
    engine = FakeEngine()
    chat, _ = _chat(engine, color=False)
    chat.run(_lines("one", "two", "/reset", "three"))
    msgs = [m for m, _ in engine.calls]
    assert [m.content for m in msgs[1] if m.role == "user"] == ["one", "two"]
    assert msgs[1][2] == Message("assistant", "w0 w1 w2 ", channel="final")
    assert [m.content for m in msgs[2]] == ["three"]


def test_effort_command_changes_params() -> None:
    engine = FakeEngine()
    chat, out = _chat(engine, color=False)
    chat.run(_lines("/effort high", "q1", "/effort bogus", "q2"))
    assert [p.reasoning_effort for _, p in engine.calls] == ["high", "high"]
    assert "usage: /effort" in out.getvalue()


def test_developer_instructions_are_sent_first() -> None:
    engine = FakeEngine()
    chat, _ = _chat(engine, color=False, developer="Talk like a pirate.")
    chat.reply("hi")
    assert engine.calls[0][0][0] == Message("developer", "Talk like a pirate.")


def test_ctrl_c_stops_the_reply_not_the_chat() -> None:
    def press_ctrl_c(i: int) -> None:
        if i == 1:
            signal.raise_signal(signal.SIGINT)

    engine = FakeEngine(on_token=press_ctrl_c, n_final=50)
    chat, out = _chat(engine, color=False)
    before = signal.getsignal(signal.SIGINT)
    chat.run(_lines("first", "second"))
    assert len(engine.calls) == 2               # the chat went on after the interrupted reply
    assert "stopped" in out.getvalue()
    assert "w2 " not in out.getvalue()          # stopped right after the token during which Ctrl-C came
    assert signal.getsignal(signal.SIGINT) is before


def test_context_full_is_reported_and_the_message_dropped() -> None:
    engine = FakeEngine()
    engine.raise_context_full = True
    chat, out = _chat(engine, color=False)
    result = chat.reply("too long")
    assert result.reason == "error"
    assert "4,096" in out.getvalue()
    assert chat.messages == []


def test_argument_parsing() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["chat", "--model", "/m", "--reasoning", "high", "--show-reasoning",
                              "--temperature", "0"])
    assert args.model == Path("/m") and args.reasoning == "high" and args.show_reasoning
    assert args.temperature == 0.0 and callable(args.func)
    with pytest.raises(SystemExit):
        configure_parser(argparse.ArgumentParser()).parse_args(["--model", "/m", "--reasoning", "extreme"])


def test_python_m_engine_chat_end_to_end(tiny_model_dir: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-m", "engine", "chat", "--model", str(tiny_model_dir), "--device", "cpu",
         "--temperature", "0", "--max-tokens", "4", "--max-context", "256", "--color", "never"],
        input="Hello\n/effort high\nAgain\n/quit\n", cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "context 256 tokens" in out.stdout
    assert out.stdout.count(" reused), prefill ") == 2 and "(reasoning effort: high)" in out.stdout
