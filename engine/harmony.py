"""The harmony chat format: render a conversation to tokens, parse generated tokens back.

Rendering is byte-identical to `openai-harmony` (`render_conversation_for_completion`) for the
conversations Lantern builds (docs/gpt-oss-spec.md §5): a system message made from the
generation parameters, an optional developer message, then user/assistant(/tool) messages, and
the prefill `<|start|>assistant`. Earlier chain of thought is dropped (§5.4): completed turns
(those before the last user message) keep only their `final` messages; the turn in progress
(after the last user message) keeps everything.

`StreamParser` turns generated tokens into (channel, text, recipient) deltas; a recipient marks a tool
call's arguments. It is lenient (spec §7 #12):
it never raises on model output and never lets a control token's text into a message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.tokenizer import StreamingDecoder, Tokenizer
from engine.types import Channel, Delta, GenerationParams, Message, ReasoningEffort

log = logging.getLogger(__name__)

MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
KNOWLEDGE_CUTOFF = "2024-06"
CHANNELS: tuple[Channel, ...] = ("analysis", "commentary", "final")
VALID_CHANNELS_LINE = "# Valid channels: analysis, commentary, final. Channel must be included for every message."

# Generation of an assistant turn stops on these (spec §5.2); <|end|> only ends one message.
STOP_TOKEN_NAMES: tuple[str, ...] = ("<|return|>", "<|call|>", "<|endoftext|>")


def stop_tokens(tokenizer: Tokenizer) -> frozenset[int]:
    return frozenset(tokenizer.special(name) for name in STOP_TOKEN_NAMES)


# --- rendering ------------------------------------------------------------------------------------


def system_message_text(reasoning_effort: ReasoningEffort = "medium", current_date: str | None = None) -> str:
    """The system message harmony renders for SystemContent.new() with these settings (no tools)."""
    head = [MODEL_IDENTITY, f"Knowledge cutoff: {KNOWLEDGE_CUTOFF}"]
    if current_date:
        head.append(f"Current date: {current_date}")
    return "\n\n".join(["\n".join(head), f"Reasoning: {reasoning_effort}", VALID_CHANNELS_LINE])


def developer_message_text(instructions: str) -> str:
    return f"# Instructions\n\n{instructions}"


def prompt_messages(messages: Sequence[Message]) -> tuple[str | None, list[Message]]:
    """(developer instructions, conversation messages) as they go into the prompt.

    System and developer messages are joined (blank line between) into the developer instructions.
    Assistant messages before the last user message keep only the `final` channel (a message with
    no channel counts as final); after it, everything is kept.
    """
    instructions = [m.content for m in messages if m.role in ("system", "developer") and m.content.strip()]
    convo = [m for m in messages if m.role not in ("system", "developer")]
    last_user = max((i for i, m in enumerate(convo) if m.role == "user"), default=-1)
    kept: list[Message] = []
    for i, m in enumerate(convo):
        if i < last_user and m.role != "user":
            if m.role != "assistant" or (m.channel or "final") != "final" or m.recipient:
                continue
        kept.append(m)
    return ("\n\n".join(instructions) if instructions else None), kept


class _Renderer:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tok = tokenizer
        self.ids: list[int] = []

    def special(self, name: str) -> None:
        self.ids.append(self.tok.special(name))

    def text(self, text: str) -> None:
        self.ids.extend(self.tok.encode(text))

    def message(self, author: str, content: str, *, channel: str | None = None, recipient: str | None = None,
                end: str = "<|end|>") -> None:
        self.special("<|start|>")
        self.text(author)
        if recipient and recipient != "all":
            self.text(f" to={recipient}")
        if channel:
            self.special("<|channel|>")
            self.text(channel)
        self.special("<|message|>")
        self.text(content)
        self.special(end)


def render_conversation(messages: Sequence[Message], params: GenerationParams, tokenizer: Tokenizer) -> list[int]:
    """Token ids of the prompt for the next assistant turn, ending with `<|start|>assistant`.

    Message roles: "system"/"developer" (instructions), "user", "assistant" (channel defaults to
    final; a recipient makes it a tool call, ended by <|call|>), "tool" (a tool's result; its
    `recipient` field names the tool, e.g. "functions.get_weather").
    """
    instructions, convo = prompt_messages(messages)
    r = _Renderer(tokenizer)
    r.message("system", system_message_text(params.reasoning_effort, params.current_date))
    if instructions is not None:
        r.message("developer", developer_message_text(instructions))
    for m in convo:
        if m.role == "user":
            r.message("user", m.content)
        elif m.role == "assistant":
            r.message("assistant", m.content, channel=m.channel or "final", recipient=m.recipient,
                      end="<|call|>" if m.recipient else "<|end|>")
        elif m.role == "tool":
            r.message(m.recipient or "tool", m.content, channel=m.channel, recipient="assistant")
        else:  # pragma: no cover - Role is a closed Literal
            raise ValueError(f"unknown role {m.role!r}")
    r.special("<|start|>")
    r.text("assistant")
    return r.ids


# --- parsing --------------------------------------------------------------------------------------

_RECIPIENT_RE = re.compile(r"^to=[^\s]*$")
_MAX_HEADER_TOKENS = 48


@dataclass(slots=True)
class ParsedMessage:
    """One assistant message parsed from generated tokens."""

    channel: Channel
    recipient: str | None = None
    parts: list[str] = field(default_factory=list)

    @property
    def content(self) -> str:
        return "".join(self.parts)

    def to_message(self) -> Message:
        return Message(role="assistant", content=self.content, channel=self.channel, recipient=self.recipient)


def _is_prefix_of_any(word: str, options: Sequence[str]) -> bool:
    return any(opt.startswith(word) for opt in options)


def _plausible_role_part(text: str, role_known: bool) -> bool:
    """Could `text` (between <|start|> and <|channel|>/<|message|>) still be a header?"""
    words = text.split()
    if text and not text[0].isspace() and role_known:
        return False  # right after "assistant" a header goes on with " to=..." or a control token
    for i, word in enumerate(words):
        if i == 0 and not role_known and _is_prefix_of_any(word, ("assistant",) + CHANNELS):
            continue
        if _is_prefix_of_any(word, ("to=",)) or _RECIPIENT_RE.match(word):
            continue
        if _is_prefix_of_any(word, ("json",)):
            continue
        return False
    return len(text) <= 200


def _parse_channel_part(text: str) -> tuple[Channel | None, str | None, str | None, bool]:
    """(channel, recipient, spill, complete) from the text after <|channel|>.

    `spill` is text that is clearly content (the model omitted <|message|>); `complete` says the
    part cannot grow into a longer header.
    """
    stripped = text.lstrip()
    for name in CHANNELS:
        if stripped.startswith(name):
            rest = stripped[len(name):]
            words = rest.split()
            recipient = next((w[3:] for w in words if w.startswith("to=")), None)
            header_like = not rest or (rest[0].isspace() and all(
                _is_prefix_of_any(w, ("to=", "json")) or w.startswith("to=") for w in words))
            if header_like:
                return name, recipient or None, None, False
            return name, None, rest, True
    return None, None, None, not _is_prefix_of_any(stripped, CHANNELS)


class StreamParser:
    """Lenient streaming parser of an assistant turn's tokens into `Delta` events.

    Call `feed(token)` per generated token; each returns the deltas it completes. After the last
    token call `finish()`. The prompt is assumed to end with `<|start|>assistant` (the role is
    known); the parser accepts what the model really does: a missing channel (text counts as
    final), a refusal with no header at all, a recipient before or after the channel, text
    after a stop token (ignored), stray control tokens (never shown).
    """

    def __init__(self, tokenizer: Tokenizer, *, role_known: bool = True) -> None:
        self._tok = tokenizer
        s = tokenizer.special
        self._start, self._end, self._message = s("<|start|>"), s("<|end|>"), s("<|message|>")
        self._channel = s("<|channel|>")
        self._stops = stop_tokens(tokenizer)
        self.messages: list[ParsedMessage] = []
        self.stop_token: int | None = None
        self._state = "header"            # "header" | "content" | "between" | "done"
        self._role_known = role_known
        self._header_tokens: list[int] = []   # text tokens of the header, in order
        self._in_channel = False              # header: after <|channel|>
        self._role_text_ids: list[int] = []
        self._channel_text_ids: list[int] = []
        self._current: ParsedMessage | None = None
        self._decoder: StreamingDecoder = tokenizer.streaming_decoder()

    # -- public ------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._state == "done"

    @property
    def current_channel(self) -> Channel | None:
        return self._current.channel if self._current is not None else None

    def feed(self, token: int) -> list[Delta]:
        if self._state == "done":
            return []
        if token in self._stops:
            out = self._close_message()
            self.stop_token = token
            self._state = "done"
            return out
        if self._state == "content":
            return self._feed_content(token)
        if self._state == "between":
            return self._feed_between(token)
        return self._feed_header(token)

    def feed_many(self, tokens: Sequence[int]) -> list[Delta]:
        out: list[Delta] = []
        for t in tokens:
            out.extend(self.feed(t))
        return out

    def finish(self) -> list[Delta]:
        """End of the stream (stop, length or cancel): flush what is pending."""
        if self._state == "done":
            return []
        out = self._close_message()
        self._state = "done"
        return out

    def final_messages(self) -> list[Message]:
        return [m.to_message() for m in self.messages]

    # -- states ------------------------------------------------------------------------------------

    def _feed_content(self, token: int) -> list[Delta]:
        if token == self._end:
            out = self._close_message()
            self._state = "between"
            return out
        if token == self._start:
            out = self._close_message()
            self._begin_header(role_known=False)
            return out
        if token == self._channel:
            out = self._close_message()
            self._begin_header(role_known=True)
            self._in_channel = True
            return out
        if self._tok.is_special(token):
            return []   # <|message|>, <|constrain|>, reserved: never text
        return self._emit(self._decoder.feed(token))

    def _feed_between(self, token: int) -> list[Delta]:
        if token == self._start:
            self._begin_header(role_known=False)
            return []
        if token == self._channel:
            self._begin_header(role_known=True)
            self._in_channel = True
            return []
        if token == self._message:
            self._begin_content(None, None)
            return []
        if self._tok.is_special(token):
            return []
        # text without <|start|>: read it as a header that lost its start token
        self._begin_header(role_known=False)
        return self._feed_header(token)

    def _feed_header(self, token: int) -> list[Delta]:
        if token == self._message:
            channel, recipient, spill, _ = self._parse_channel()
            self._begin_content(channel, recipient)
            return self._emit_spill(spill) if spill else []
        if token == self._channel:
            # a repeated <|channel|> (e.g. "<|channel|>final<|channel|>final"): the last one counts
            self._in_channel = True
            del self._header_tokens[len(self._header_tokens) - len(self._channel_text_ids):]   # a suffix
            self._channel_text_ids = []
            return []
        if token == self._end or token == self._start:
            # a header that never got its <|message|>: still header-like text, so nothing to show
            self._drop_header()
            if token == self._start:
                self._begin_header(role_known=False)
            else:
                self._state = "between"
            return []
        if self._tok.is_special(token):
            return []   # <|constrain|> (a content type follows), reserved ids: not text
        if self._in_channel:
            self._channel_text_ids.append(token)
        else:
            self._role_text_ids.append(token)
        self._header_tokens.append(token)
        return self._check_header()

    # -- helpers -----------------------------------------------------------------------------------

    def _begin_header(self, *, role_known: bool) -> None:
        self._state = "header"
        self._role_known = role_known
        self._header_tokens = []
        self._role_text_ids = []
        self._channel_text_ids = []
        self._in_channel = False

    def _begin_content(self, channel: Channel | None, recipient: str | None) -> None:
        self._current = ParsedMessage(channel=channel or "final", recipient=recipient)
        self.messages.append(self._current)
        self._decoder = self._tok.streaming_decoder()
        self._state = "content"

    def _role_text(self) -> str:
        return self._tok.decode(self._role_text_ids)

    def _parse_channel(self) -> tuple[Channel | None, str | None, str | None, bool]:
        role_text = self._role_text()
        recipient = next((w[3:] for w in role_text.split() if w.startswith("to=")), None)
        if not self._in_channel:
            # "<|end|>commentary to=functions.f<|message|>": the model left out <|start|>assistant<|channel|>
            channel = next((w for w in role_text.split() if w in CHANNELS), None)
            return channel, recipient or None, None, False
        channel, recipient2, spill, complete = _parse_channel_part(self._tok.decode(self._channel_text_ids))
        return channel, (recipient2 or recipient or None), spill, complete

    def _check_header(self) -> list[Delta]:
        """Switch to content when the header text cannot be a header (refusals, malformed output)."""
        if len(self._header_tokens) > _MAX_HEADER_TOKENS:
            return self._header_as_content()
        if not self._in_channel:
            if not _plausible_role_part(self._role_text(), self._role_known):
                return self._header_as_content()
            return []
        channel, recipient, spill, complete = _parse_channel_part(self._tok.decode(self._channel_text_ids))
        if channel is not None and spill is not None:
            self._begin_content(channel, recipient)
            return self._emit_spill(spill)
        if channel is None and complete and "\n" in self._tok.decode(self._channel_text_ids):
            return self._header_as_content()   # a line break: this is prose, not a malformed channel name
        return []   # wait for <|message|> (a malformed channel name is dropped) or the header limit

    def _header_as_content(self) -> list[Delta]:
        """Give up on the header: its text becomes the content of a message (final if no channel)."""
        channel, recipient, spill, _ = self._parse_channel()
        self._begin_content(channel, recipient)
        if channel is not None:
            return self._emit_spill(spill) if spill else []
        text = self._decoder.feed_many(self._header_tokens)
        if not self._role_known and text.startswith("assistant"):
            text = text[len("assistant"):]
        return self._emit(text)

    def _emit_spill(self, spill: str) -> list[Delta]:
        """Emit the content that followed a channel name with no <|message|>, without splitting characters.

        The channel text's tokens are re-walked: whole tokens inside the spill are fed to the
        streaming decoder (so a character cut at the end stays pending); a token straddling the
        channel name contributes its decoded tail.
        """
        ids = self._channel_text_ids
        keep = len(self._tok.decode(ids)) - len(spill)   # chars that belong to the header
        for k in range(len(ids) + 1):
            head = self._tok.decode(ids[:k])
            if len(head) >= keep and "\ufffd" not in head:
                return self._emit(head[keep:] + self._decoder.feed_many(ids[k:]))
        return self._emit(spill)

    def _emit(self, text: str) -> list[Delta]:
        if not text or self._current is None:
            return []
        self._current.parts.append(text)
        return [Delta(self._current.channel, text, self._current.recipient)]

    def _drop_header(self) -> None:
        if self._header_tokens:
            log.debug("dropping an unfinished harmony header: %r", self._tok.decode(self._header_tokens))
        self._header_tokens = []

    def _close_message(self) -> list[Delta]:
        out: list[Delta] = []
        if self._state == "header":
            self._drop_header()   # text that stopped looking like a header was already made content
        if self._current is not None:
            out.extend(self._emit(self._decoder.flush()))
        self._current = None
        return out
