"""Structured output the harmony way: a JSON-Schema grammar holds only inside the `final` message's body.

The model stays free everywhere else: its reasoning, the message headers and their control tokens
(a grammar applied to the whole stream blocks `<|channel|>` and friends, and the sampler then picks
garbage; docs/harmony-tools.md). `FinalChannelConstraint` wraps a `Sampler`: it watches the tokens it
hands out, and from the `<|message|>` of an assistant header on the `final` channel (no recipient) it
masks the logits with llguidance's matcher for the schema; once the JSON value is complete it may
end with `<|return|>` (the end of the turn), and once the value cannot go on, nothing else is allowed. A tool-call header is not constrained.

llguidance (the grammar engine behind llama.cpp's and vLLM's JSON modes) compiles JSON Schema itself,
works on tiktoken vocabularies, and computes a mask in microseconds; its token table is built once
per process (about 2 s).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from typing import Any

import torch

from engine.errors import EngineError
from engine.tokenizer import Tokenizer
from engine.types import ResponseFormat

log = logging.getLogger(__name__)

_lock = threading.Lock()

# One layout for the JSON the model writes under the grammar: `{"a": 1, "b": [1, 2]}` (no free
# whitespace, so a weak or random model cannot run on with spaces and newlines).
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class SchemaError(EngineError):
    """A response format whose schema the grammar compiler rejects."""


@functools.lru_cache(maxsize=2)
def _lltokenizer(tokenizer: Tokenizer) -> Any:
    from llguidance.tiktoken import lltokenizer_from_encoding

    return lltokenizer_from_encoding(tokenizer.tiktoken_encoding, eos_token=tokenizer.special("<|return|>"))


def grammar_for(fmt: ResponseFormat) -> str:
    """The llguidance grammar for a response format; SchemaError if it cannot be compiled."""
    import llguidance

    schema = fmt.schema if fmt.schema is not None else {"type": "object"}
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_LAYOUT)
        ok, message = _validate(grammar)
    except (ValueError, TypeError) as exc:
        raise SchemaError(f"The response format's JSON schema cannot be used: {exc}") from exc
    if not ok:
        raise SchemaError(f"The response format's JSON schema cannot be used: {message}")
    return grammar


def _validate(grammar: str) -> tuple[bool, str]:
    """(usable, message): llguidance's validate_grammar returns an error text, empty when the grammar is fine."""
    import llguidance

    message = llguidance.LLMatcher.validate_grammar(grammar)
    return not message, message


_SHIFTS = torch.arange(32, dtype=torch.int32)


def _only(logits: torch.Tensor, allowed: list[int]) -> torch.Tensor:
    out = torch.full_like(logits, float("-inf"))
    out[allowed] = logits[allowed]
    return out


def _allowed_tokens(matcher: Any, vocab: int) -> torch.Tensor:
    """[vocab] bool: the tokens the matcher accepts next (its bitmask unpacked, bit i of word w = token 32w+i)."""
    words = torch.frombuffer(bytearray(matcher.compute_bitmask()), dtype=torch.int32)      # [ceil(V/32)]
    return ((words.unsqueeze(1) >> _SHIFTS) & 1).bool().reshape(-1)[:vocab]


class FinalChannelConstraint:
    """`sampler(logits) -> token` that holds the final message's body to a JSON schema."""

    def __init__(self, base: Any, tokenizer: Tokenizer, fmt: ResponseFormat) -> None:
        self.base = base
        self.tok = tokenizer
        self.grammar = grammar_for(fmt)
        s = tokenizer.special
        self._start, self._message, self._channel = s("<|start|>"), s("<|message|>"), s("<|channel|>")
        self._ends = (s("<|return|>"),)     # the final message ends the turn
        self._stops = (s("<|return|>"), s("<|end|>"), s("<|call|>"), s("<|endoftext|>"))
        self._header: list[int] = []       # tokens since <|start|>assistant (the prompt ends with it)
        self._in_header = True
        self.matcher: Any = None           # llguidance.LLMatcher while inside a final body
        self.constrained_tokens = 0        # how many tokens were sampled under the grammar

    @property
    def active(self) -> bool:
        return self.matcher is not None

    def _mask(self, logits: torch.Tensor) -> torch.Tensor:
        out = logits.reshape(-1).float().cpu()                         # [V] f32
        ends = list(self._ends)
        if self.matcher.is_stopped() or self.matcher.is_error():
            return _only(out, ends).to(logits.device)
        allowed = _allowed_tokens(self.matcher, out.shape[0])
        allowed[ends] = bool(self.matcher.is_accepting())             # the value is complete: it may end
        return out.masked_fill(~allowed, float("-inf")).to(logits.device)

    def __call__(self, logits: torch.Tensor) -> int:
        if self.matcher is not None:
            logits = self._mask(logits)
            self.constrained_tokens += 1
        token = int(self.base(logits))
        self._advance(token)
        return token

    def _advance(self, token: int) -> None:
        if self.matcher is not None:
            if token in self._stops:
                self.matcher = None
                self._in_header = False
            elif not self.matcher.consume_token(token):
                log.debug("grammar rejected token %d", token)
            return
        if token == self._start:
            self._header, self._in_header = [], True
        elif token == self._message:
            if self._in_header and self._is_final_header():
                import llguidance

                with _lock:
                    lt = _lltokenizer(self.tok)
                self.matcher = llguidance.LLMatcher(lt, self.grammar, log_level=0)
            self._in_header = False
        elif token in self._stops:
            self._in_header = False
        elif self._in_header:
            self._header.append(token)

    def _is_final_header(self) -> bool:
        text = self.tok.decode(self._header)
        if "<|channel|>" not in text or "to=" in text:
            return False
        channel = text.split("<|channel|>")[-1].replace("<|constrain|>", " ").split()
        return bool(channel) and channel[0] == "final"


def constrain_final_channel(base: Any, tokenizer: Tokenizer, fmt: ResponseFormat) -> FinalChannelConstraint:
    return FinalChannelConstraint(base, tokenizer, fmt)


# --- tool_choice "required" / a named function --------------------------------------------------------


class RequiredToolCall:
    """`sampler(logits) -> token` that makes the turn end in a call to one of the allowed functions.

    The model may still reason first (analysis messages, free text), but every message header it
    writes is held to one of `<|channel|>analysis<|message|>` or
    `<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>` (NAME allowed), the
    arguments to the function's JSON schema (a schema the grammar cannot compile: any JSON object),
    and the call ends with `<|call|>`. A final answer, a preamble or `<|return|>` cannot happen.
    """

    def __init__(self, base: Any, tokenizer: Tokenizer, params: Any) -> None:
        from engine.harmony_tools import function_names

        self.base = base
        self.tok = tokenizer
        s = tokenizer.special
        self._start, self._end, self._call = s("<|start|>"), s("<|end|>"), s("<|call|>")
        self._banned_in_text = [s("<|return|>"), s("<|call|>"), s("<|endoftext|>"), s("<|start|>")]
        self._assistant = tokenizer.encode("assistant")
        names = function_names(params.tools)
        allowed = params.allowed_tools or tuple(t.name for t in params.tools)
        self.headers: dict[str, list[int]] = {
            "": tokenizer.encode("<|channel|>analysis<|message|>", allow_special=True)}
        self.grammars: dict[str, str] = {}
        for tool in params.tools:
            if tool.name not in allowed:
                continue
            self.headers[tool.name] = tokenizer.encode(
                f"<|channel|>commentary to=functions.{names[tool.name]} <|constrain|>json<|message|>", allow_special=True)
            fmt = ResponseFormat(tool.name, tool.parameters if isinstance(tool.parameters, dict) else {"type": "object"})
            try:
                self.grammars[tool.name] = grammar_for(fmt)
            except SchemaError:
                self.grammars[tool.name] = grammar_for(ResponseFormat(tool.name, {"type": "object"}))
        self.state = "header"        # header | analysis | after_end | role | arguments | done
        self._sofar: list[int] = []  # header tokens, or role tokens after <|start|>
        self.matcher: Any = None
        self.called: str | None = None

    def _allowed(self) -> list[int] | None:
        if self.state == "header":
            k = len(self._sofar)
            return sorted({seq[k] for seq in self.headers.values() if len(seq) > k and seq[:k] == self._sofar})
        if self.state == "after_end":
            return [self._start]
        if self.state == "role":
            return [self._assistant[len(self._sofar)]]
        return None

    def __call__(self, logits: torch.Tensor) -> int:
        flat = logits.reshape(-1)
        allowed = self._allowed()
        if allowed is not None:
            flat = _only(flat, allowed)
        elif self.state == "analysis":
            flat = flat.clone()
            flat[self._banned_in_text] = float("-inf")
        elif self.state == "arguments":
            flat = self._arguments_mask(flat)
        token = int(self.base(flat))
        self._advance(token)
        return token

    def _arguments_mask(self, logits: torch.Tensor) -> torch.Tensor:
        out = logits.float().cpu()
        if self.matcher.is_stopped() or self.matcher.is_error():
            return _only(out, [self._call]).to(logits.device)
        allowed = _allowed_tokens(self.matcher, out.shape[0])
        allowed[self.tok.special("<|return|>")] = False     # the grammar's own end token: the call ends in <|call|>
        allowed[self._call] = bool(self.matcher.is_accepting())
        return out.masked_fill(~allowed, float("-inf")).to(logits.device)

    def _advance(self, token: int) -> None:
        if self.state == "header":
            self._sofar.append(token)
            for name, seq in self.headers.items():
                if self._sofar == seq:
                    if name:
                        import llguidance

                        with _lock:
                            lt = _lltokenizer(self.tok)
                        self.matcher = llguidance.LLMatcher(lt, self.grammars[name], log_level=0)
                        self.state, self.called = "arguments", name
                    else:
                        self.state = "analysis"
                    self._sofar = []
                    return
        elif self.state == "analysis":
            if token == self._end:
                self.state = "after_end"
        elif self.state == "after_end":
            self.state, self._sofar = "role", []
        elif self.state == "role":
            self._sofar.append(token)
            if len(self._sofar) == len(self._assistant):
                self.state, self._sofar = "header", []
        elif self.state == "arguments":
            if token == self._call:
                self.state, self.matcher = "done", None
            else:
                self.matcher.consume_token(token)


def constrain_tool_call(base: Any, tokenizer: Tokenizer, params: Any) -> RequiredToolCall:
    return RequiredToolCall(base, tokenizer, params)
