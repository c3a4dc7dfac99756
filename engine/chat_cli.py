"""Terminal chat: `python -m engine chat --model DIR` (or `python -m engine.chat_cli --model DIR`).

Streams the answer as it is generated; with --show-reasoning the chain of thought is shown dimmed.
Commands: /reset (new conversation), /effort low|medium|high, /help, /quit. Ctrl-C stops the current
reply (the conversation goes on); Ctrl-C or Ctrl-D at the prompt quits. After each reply a line
with token counts and speed is printed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from engine.errors import EngineError
from engine.types import DEFAULT_REASONING_EFFORT, ChatEngine, Delta, Finished, GenerationParams, Message, Usage

DIM, RED, RESET = "\033[2m", "\033[31m", "\033[0m"
EFFORTS = ("low", "medium", "high")
HELP = "Commands: /reset  /effort low|medium|high  /help  /quit   (Ctrl-C stops a reply)"


ChatBackend = ChatEngine
"""What the terminal chat needs from `engine.api.Engine` (tests pass a fake)."""


def format_usage(usage: Usage) -> str:
    return (f"{usage.completion_tokens} tokens, {usage.decode_tokens_per_s:.1f} tokens/s; "
            f"prompt {usage.prompt_tokens} tokens ({usage.reused_tokens} reused), "
            f"prefill {usage.prefill_tokens_per_s:.0f} tokens/s, first token after {usage.time_to_first_token_s:.2f} s")


class TerminalChat:
    """The read-eval-print loop, independent of the real terminal for testing."""

    def __init__(self, engine: ChatBackend, params: GenerationParams, *, show_reasoning: bool = False,
                 color: bool = True, out: TextIO = sys.stdout, developer: str | None = None) -> None:
        self.engine = engine
        self.params = params
        self.show_reasoning = show_reasoning
        self.color = color
        self.out = out
        self.developer = developer
        self.messages: list[Message] = []
        self.session = engine.new_session()
        self._stop = threading.Event()

    # ---- output helpers ------------------------------------------------------------------------
    def _write(self, text: str, style: str = "") -> None:
        if style and self.color:
            body = text.rstrip("\n")
            self.out.write(f"{style}{body}{RESET}{text[len(body):]}")
        else:
            self.out.write(text)
        self.out.flush()

    # ---- commands ------------------------------------------------------------------------------
    def handle_command(self, line: str) -> bool:
        """Run a /command; False means quit."""
        cmd, _, arg = line.strip().partition(" ")
        arg = arg.strip().lower()
        if cmd in ("/quit", "/exit", "/q"):
            return False
        if cmd == "/reset":
            self.messages = []
            self._write("(new conversation)\n", DIM)
        elif cmd == "/effort":
            if arg in EFFORTS:
                self.params = replace(self.params, reasoning_effort=arg)  # type: ignore[arg-type]
                self._write(f"(reasoning effort: {arg})\n", DIM)
            else:
                self._write(f"usage: /effort {'|'.join(EFFORTS)} (now {self.params.reasoning_effort})\n", RED)
        else:
            self._write(HELP + "\n", DIM)
        return True

    # ---- one reply -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def reply(self, user_text: str) -> Finished:
        """Send one user message and stream the reply to `out`."""
        self.messages.append(Message("user", user_text))
        convo = ([Message("developer", self.developer)] if self.developer else []) + self.messages
        self._stop.clear()
        try:
            events = self.engine.chat(self.session, convo, self.params, should_stop=self._stop.is_set)
        except EngineError as exc:
            self.messages.pop()
            self._write(f"{exc}\n", RED)
            return Finished("error", error=str(exc))
        texts: dict[str, list[str]] = {"analysis": [], "commentary": [], "final": []}
        last_channel: str | None = None
        last_recipient: str | None = None
        finished = Finished("error", error="the reply ended without a result")
        for event in events:
            if isinstance(event, Delta):
                texts[event.channel].append(event.text)
                if last_channel is not None and event.channel != last_channel:
                    self._write("\n")
                if event.recipient and last_recipient != event.recipient:
                    self._write(f"[tool call to {event.recipient}] ", DIM)   # its arguments follow
                if event.channel == "analysis":
                    if self.show_reasoning:
                        self._write(("" if last_channel == "analysis" else "[thinking] ") + event.text, DIM)
                    elif last_channel != "analysis":
                        self._write("[thinking...]", DIM)
                else:
                    self._write(event.text)
                last_channel, last_recipient = event.channel, event.recipient
            elif isinstance(event, Finished):
                finished = event
        self._write("\n")
        for channel in ("analysis", "commentary", "final"):
            if texts[channel]:
                self.messages.append(Message("assistant", "".join(texts[channel]), channel=channel))  # type: ignore[arg-type]
        if finished.reason == "error":
            self._write(f"{finished.error}\n", RED)
        else:
            note = {"cancelled": "stopped; ", "length": "cut off at the token limit; ",
                    "tool_call": "the model tried to call a tool; "}.get(finished.reason, "")
            self._write(f"[{note}{format_usage(finished.usage)}]\n", DIM)
        return finished

    # ---- loop ----------------------------------------------------------------------------------
    def run(self, read_line: Callable[[str], str] = input) -> None:
        info = self.engine.info
        where = f"{info.device}, {info.backend}" if info.backend else info.device
        self._write(f"{info.name} on {where}; context {info.max_context} tokens; "
                    f"reasoning {self.params.reasoning_effort}\n", DIM)
        if info.fallback_reason:
            self._write(f"({info.fallback_reason})\n", DIM)
        self._write(HELP + "\n", DIM)
        while True:
            try:
                line = read_line("> ")
            except (EOFError, KeyboardInterrupt):
                self._write("\n")
                return
            if not line.strip():
                continue
            if line.startswith("/"):
                if not self.handle_command(line):
                    return
                continue
            self._reply_with_ctrl_c(line)

    def _reply_with_ctrl_c(self, line: str) -> Finished:
        """Run `reply` with Ctrl-C bound to "stop this reply" (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return self.reply(line)
        previous = signal.signal(signal.SIGINT, lambda _sig, _frame: self.request_stop())
        try:
            return self.reply(line)
        finally:
            signal.signal(signal.SIGINT, previous)


# ---- command line --------------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", required=True, type=Path, help="model folder (Hugging Face repo or original/)")
    parser.add_argument("--reasoning", choices=EFFORTS, default=DEFAULT_REASONING_EFFORT,
                        help=f"reasoning effort (default {DEFAULT_REASONING_EFFORT}, as in the window)")
    parser.add_argument("--show-reasoning", action="store_true", help="show the chain of thought, dimmed")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1.0)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=4096, help="reply tokens, reasoning included")
    parser.add_argument("--max-context", type=int, default=8192)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--date", default=date.today().isoformat(),
                        help="current date for the system message (default today; 'none' leaves it out)")
    parser.add_argument("--developer", default=None, help="developer instructions")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.set_defaults(func=run_chat)
    return parser


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `chat` subcommand on `python -m engine`'s subparsers."""
    parser = subparsers.add_parser("chat", help="chat with a model in the terminal", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    return configure_parser(parser)


def run_chat(args: argparse.Namespace) -> int:
    from engine.api import Engine

    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    params = GenerationParams(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                              reasoning_effort=args.reasoning, seed=args.seed,
                              current_date=None if args.date.lower() == "none" else args.date)

    def progress(message: str, fraction: float) -> None:
        print(f"{message}... {fraction:.0%}", file=sys.stderr, flush=True)

    try:
        engine = Engine.load(args.model, device=args.device, max_context=args.max_context, progress=progress)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        TerminalChat(engine, params, show_reasoning=args.show_reasoning, color=color,
                     developer=args.developer).run()
    finally:
        engine.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = configure_parser(argparse.ArgumentParser(prog="python -m engine.chat_cli", description=__doc__,
                                                      formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
