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
        import llguidance.torch as lgt

        with _lock:
            lt = _lltokenizer(self.tok)
        bitmask = lgt.allocate_token_bitmask(1, lt.vocab_size)
        out = logits.reshape(-1).float().cpu().clone()                 # [V] f32
        if self.matcher.is_stopped() or self.matcher.is_error():
            allowed = torch.full_like(out, float("-inf"))
            allowed[list(self._ends)] = out[list(self._ends)]
            return allowed.to(logits.device)
        lgt.fill_next_token_bitmask(self.matcher, bitmask, 0)
        end_logits = out[list(self._ends)].clone()
        lgt.apply_token_bitmask_inplace(out, bitmask[0])
        if self.matcher.is_accepting():                                # the value is complete: it may end
            out[list(self._ends)] = end_logits
        return out.to(logits.device)

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
