"""The harmony chat format: render a conversation to tokens, parse generated tokens back.

Rendering is byte-identical to `openai-harmony` (`render_conversation_for_completion`) for the
conversations Lantern builds (docs/gpt-oss-spec.md §5, docs/harmony-tools.md): a system message made
from the generation parameters (reasoning effort, date, built-in tools), an optional developer
message (instructions, function tools, response format), then user/assistant/tool messages, and
the prefill `<|start|>assistant`. Earlier chain of thought is dropped (§5.4): completed turns
(those before the last user message) keep only their `final` messages and their function calls
with the functions' results; the turn in progress (after the last user message) keeps everything.

`StreamParser` turns generated tokens into (channel, text, recipient, content type) deltas; a
recipient marks a tool call's arguments. It is lenient (spec §7 #12): it never raises on model
output and never lets a control token's text into a message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.harmony_tools import (
    FUNCTIONS_CHANNEL_LINE,
    BuiltinTool,
    builtin_namespace,
    functions_namespace,
    response_format_section,
    tools_section,
)
from engine.tokenizer import StreamingDecoder, Tokenizer
from engine.types import Channel, Delta, FunctionTool, GenerationParams, Message, ReasoningEffort, ResponseFormat

log = logging.getLogger(__name__)

MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
KNOWLEDGE_CUTOFF = "2024-06"
CHANNELS: tuple[Channel, ...] = ("analysis", "commentary", "final")
VALID_CHANNELS_LINE = "# Valid channels: analysis, commentary, final. Channel must be included for every message."
CONSTRAIN = "<|constrain|>"

# Generation of an assistant turn stops on these (spec §5.2); <|end|> only ends one message.
STOP_TOKEN_NAMES: tuple[str, ...] = ("<|return|>", "<|call|>", "<|endoftext|>")


def stop_tokens(tokenizer: Tokenizer) -> frozenset[int]:
    return frozenset(tokenizer.special(name) for name in STOP_TOKEN_NAMES)


# --- rendering ------------------------------------------------------------------------------------


def system_message_text(reasoning_effort: ReasoningEffort = "medium", current_date: str | None = None,
                        builtin_tools: Sequence[BuiltinTool] = (), has_function_tools: bool = False) -> str:
    """The system message harmony renders for SystemContent.new() with these settings.

    Built-in tools get a `# Tools` section; `has_function_tools` (the developer message declares
    functions) adds the line that sends their calls to the commentary channel.
    """
    head = [MODEL_IDENTITY, f"Knowledge cutoff: {KNOWLEDGE_CUTOFF}"]
    if current_date:
        head.append(f"Current date: {current_date}")
    sections = ["\n".join(head), f"Reasoning: {reasoning_effort}"]
    if builtin_tools:
        sections.append(tools_section(builtin_namespace(name) for name in dict.fromkeys(builtin_tools)))
    channels = VALID_CHANNELS_LINE + (f"\n{FUNCTIONS_CHANNEL_LINE}" if has_function_tools else "")
    return "\n\n".join(sections + [channels])


def developer_message_text(instructions: str | None, tools: Sequence[FunctionTool] = (),
                           response_format: ResponseFormat | None = None) -> str | None:
    """`# Instructions`, then the `functions` namespace, then `# Response Formats`; None when all are absent."""
    sections: list[str] = []
    if instructions is not None:
        sections += ["# Instructions", instructions]
    if tools:
        sections.append(tools_section([functions_namespace(tools)]))
    if response_format is not None:
        sections.append(response_format_section(response_format))
    return "\n\n".join(sections) if sections else None


def rendered_functions(params: GenerationParams) -> tuple[FunctionTool, ...]:
    """The function tools the prompt declares: none when tool_choice is "none"."""
    return () if params.tool_choice == "none" else tuple(params.tools)


def _kept_in_completed_turn(m: Message) -> bool:
    if m.role == "assistant":
        channel = m.channel or "final"
        return (channel == "final" and not m.recipient) or (channel == "commentary" and bool(m.recipient))
    if m.role == "tool":
        return m.channel != "analysis"
    return True


def prompt_messages(messages: Sequence[Message]) -> tuple[str | None, list[Message]]:
    """(developer instructions, conversation messages) as they go into the prompt.

    System and developer messages are joined (blank line between) into the developer instructions.
    Before the last user message, assistant messages keep only the `final` channel (a message with
    no channel counts as final) and function calls (commentary with a recipient), tool results
    only those not on `analysis` (a built-in tool's call and result go with the chain of thought);
    after it, everything is kept.
    """
    instructions = [m.content for m in messages if m.role in ("system", "developer") and m.content.strip()]
    convo = [m for m in messages if m.role not in ("system", "developer")]
    last_user = max((i for i, m in enumerate(convo) if m.role == "user"), default=-1)
    kept = [m for i, m in enumerate(convo) if i >= last_user or _kept_in_completed_turn(m)]
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
                content_type: str | None = None, end: str = "<|end|>") -> None:
        """`<|start|>author[ to=recipient][<|channel|>channel][ content_type]<|message|>content{end}`."""
        self.special("<|start|>")
        self.text(author)
        if recipient and recipient != "all":
            self.text(f" to={recipient}")
        if channel:
            self.special("<|channel|>")
            self.text(channel)
        if content_type:
            if content_type.startswith(CONSTRAIN):   # the marker is a control token, the rest text
                self.text(" ")
                self.special(CONSTRAIN)
                if content_type[len(CONSTRAIN):]:
                    self.text(content_type[len(CONSTRAIN):])
            else:
                self.text(f" {content_type}")
        self.special("<|message|>")
        self.text(content)
        self.special(end)


def render_conversation(messages: Sequence[Message], params: GenerationParams, tokenizer: Tokenizer) -> list[int]:
    """Token ids of the prompt for the next assistant turn, ending with `<|start|>assistant`.

    Message roles: "system"/"developer" (instructions), "user", "assistant" (channel defaults to
    final; a recipient makes it a tool call, ended by <|call|>; its content_type is kept), "tool" (a
    tool's result, authored by `tool_name`, e.g. "functions.get_weather", and addressed to the
    assistant; older code named the tool in `recipient`, which is still understood).
    """
    instructions, convo = prompt_messages(messages)
    functions = rendered_functions(params)
    r = _Renderer(tokenizer)
    r.message("system", system_message_text(params.reasoning_effort, params.current_date, params.builtin_tools,
                                            bool(functions)))
    developer = developer_message_text(instructions, functions, params.response_format)
    if developer is not None:
        r.message("developer", developer)
    for m in convo:
        if m.role == "user":
            r.message("user", m.content)
        elif m.role == "assistant":
            r.message("assistant", m.content, channel=m.channel or "final", recipient=m.recipient,
                      content_type=m.content_type, end="<|call|>" if m.recipient else "<|end|>")
        elif m.role == "tool":
            if m.tool_name:
                author, recipient = m.tool_name, m.recipient or "assistant"
            else:
                author, recipient = m.recipient or "tool", "assistant"
            r.message(author, m.content, channel=m.channel, recipient=recipient, content_type=m.content_type)
        else:  # pragma: no cover - Role is a closed Literal
            raise ValueError(f"unknown role {m.role!r}")
    r.special("<|start|>")
    r.text("assistant")
    return r.ids


# --- parsing --------------------------------------------------------------------------------------

_MAX_HEADER_TOKENS = 48
_NAME_RE = re.compile(r"^[\w.\-:/+@]*$")      # what a recipient or content type may be made of
KNOWN_CONTENT_TYPES = ("json", "code", "text", "markdown")


@dataclass(slots=True)
class ParsedMessage:
    """One assistant message parsed from generated tokens."""

    channel: Channel
    recipient: str | None = None
    content_type: str | None = None
    parts: list[str] = field(default_factory=list)

    @property
    def content(self) -> str:
        return "".join(self.parts)

    def to_message(self) -> Message:
        return Message(role="assistant", content=self.content, channel=self.channel, recipient=self.recipient,
                       content_type=self.content_type)


def _is_prefix_of_any(word: str, options: Sequence[str]) -> bool:
    return any(opt.startswith(word) for opt in options)


def header_words(text: str) -> list[str]:
    """Whitespace-separated header words; `<|constrain|>` always starts a word (as harmony reads it)."""
    return text.replace(CONSTRAIN, " " + CONSTRAIN).split()


def _is_content_type(word: str) -> bool:
    return word.startswith(CONSTRAIN) or word in KNOWN_CONTENT_TYPES


def _looks_like_recipient(word: str) -> bool:
    """A bare tool name: dotted (functions.f, browser.search) or python."""
    return "." in word.strip(".") or word == "python"


def _word_plausible(word: str, complete: bool, after_recipient: bool) -> bool:
    """Can `word` be (the start of) a header's recipient or content type?"""
    if word.startswith("to="):
        return bool(_NAME_RE.match(word[3:]))
    if word.startswith(CONSTRAIN):
        return bool(_NAME_RE.match(word[len(CONSTRAIN):]))
    if not _NAME_RE.match(word):
        return False
    if not complete:
        return True   # may still grow into one
    return after_recipient or _is_content_type(word) or _looks_like_recipient(word)


def _header_words_plausible(words: Sequence[str], last_complete: bool) -> bool:
    if len(words) > 3:
        return False
    after_recipient = False
    for i, word in enumerate(words):
        complete = last_complete or i < len(words) - 1
        if not _word_plausible(word, complete, after_recipient):
            return False
        after_recipient = after_recipient or word.startswith("to=") or (complete and _looks_like_recipient(word))
    return True


def recipient_and_content_type(words: Sequence[str]) -> tuple[str | None, str | None]:
    """(recipient, content type) from a header's words other than the role and the channel.

    As harmony reads them: `to=X` is the recipient and a last word after it the content type
    (`to=functions.f <|constrain|>json`, `to=python code`); two bare words are a recipient and a
    content type; one bare word is a recipient (`functions.f`), except a content type name
    (`json`, `code`, ...), which harmony would take for a recipient: here it stays a content type.
    """
    to_words = [w[3:] for w in words if w.startswith("to=")]
    others = [w for w in words if not w.startswith("to=")]
    recipient = to_words[-1] if to_words else None
    content_type = None
    if others:
        if recipient is not None:
            content_type = others[-1]
        elif len(others) >= 2:
            recipient, content_type = others[-2], others[-1]
        elif _is_content_type(others[0]):
            content_type = others[0]
        else:
            recipient = others[0]
    return recipient or None, content_type


def _plausible_role_part(text: str, role_known: bool) -> bool:
    """Could `text` (between <|start|> and <|channel|>/<|message|>) still be a header?"""
    if text and not text[0].isspace() and role_known:
        return False  # right after "assistant" a header goes on with " to=..." or a control token
    words = header_words(text)
    if not role_known and words and (_is_prefix_of_any(words[0], ("assistant",) + CHANNELS)):
        words = words[1:]
    return len(text) <= 200 and _header_words_plausible(words, not text or text[-1].isspace())


def _parse_channel_part(text: str, *, final: bool = False) -> tuple[Channel | None, list[str], str | None, bool]:
    """(channel, header words after it, spill, complete) from the text after <|channel|>.

    `spill` is text that is clearly content (the model omitted <|message|>; it may still hold the
    text of a <|constrain|> token, which is never shown); `complete` says the
    part cannot grow into a longer header. With `final` (<|message|> came) every word is complete.
    """
    stripped = text.lstrip()
    for name in CHANNELS:
        if stripped.startswith(name):
            rest = stripped[len(name):]
            if rest and not rest[0].isspace() and not rest.startswith(CONSTRAIN):
                return name, [], rest, True   # glued to the channel name: content
            words = header_words(rest)
            if _header_words_plausible(words, final or not rest or rest[-1].isspace()):
                return name, words, None, False
            return name, [], rest, True
    return None, [], None, not _is_prefix_of_any(stripped, CHANNELS)


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
        self._channel, self._constrain = s("<|channel|>"), s(CONSTRAIN)
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
            self._begin_content(None, None, None)
            return []
        if self._tok.is_special(token):
            return []
        # text without <|start|>: read it as a header that lost its start token
        self._begin_header(role_known=False)
        return self._feed_header(token)

    def _feed_header(self, token: int) -> list[Delta]:
        if token == self._message:
            channel, recipient, content_type, spill = self._parse_header(final=True)
            self._begin_content(channel, recipient, content_type)
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
        if self._tok.is_special(token) and token != self._constrain:
            return []   # reserved ids: not text (<|constrain|> starts a content type: kept in the header)
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

    def _begin_content(self, channel: Channel | None, recipient: str | None, content_type: str | None) -> None:
        self._current = ParsedMessage(channel=channel or "final", recipient=recipient, content_type=content_type)
        self.messages.append(self._current)
        self._decoder = self._tok.streaming_decoder()
        self._state = "content"

    def _role_text(self) -> str:
        return self._tok.decode(self._role_text_ids)

    def _parse_header(self, *, final: bool) -> tuple[Channel | None, str | None, str | None, str | None]:
        """(channel, recipient, content type, spill) of the header read so far."""
        role_words = header_words(self._role_text())
        channel: Channel | None = None
        if not self._in_channel:
            # "<|end|>commentary to=functions.f<|message|>": the model left out <|start|>assistant<|channel|>
            channel = next((w for w in role_words if w in CHANNELS), None)
        # before the channel only recognisable header words count (the role may be garbled)
        role_words = [w for w in role_words if w not in CHANNELS and w != "assistant" and (
            w.startswith("to=") or _is_content_type(w) or _looks_like_recipient(w))]
        if not self._in_channel:
            return (channel, *recipient_and_content_type(role_words), None)
        channel, words, spill, _ = _parse_channel_part(self._tok.decode(self._channel_text_ids), final=final)
        return (channel, *recipient_and_content_type(role_words + words), spill)

    def _check_header(self) -> list[Delta]:
        """Switch to content when the header text cannot be a header (refusals, malformed output)."""
        if len(self._header_tokens) > _MAX_HEADER_TOKENS:
            return self._header_as_content()
        if not self._in_channel:
            if not _plausible_role_part(self._role_text(), self._role_known):
                return self._header_as_content()
            return []
        channel, recipient, content_type, spill = self._parse_header(final=False)
        if channel is not None and spill is not None:
            self._begin_content(channel, recipient, content_type)
            return self._emit_spill(spill)
        _, _, _, complete = _parse_channel_part(self._tok.decode(self._channel_text_ids))
        if channel is None and complete and "\n" in self._tok.decode(self._channel_text_ids):
            return self._header_as_content()   # a line break: this is prose, not a malformed channel name
        return []   # wait for <|message|> (a malformed channel name is dropped) or the header limit

    def _header_as_content(self) -> list[Delta]:
        """Give up on the header: its text becomes the content of a message (final if no channel)."""
        channel, recipient, content_type, spill = self._parse_header(final=False)
        self._begin_content(channel, recipient, content_type)
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
                return self._emit((head[keep:] + self._decoder.feed_many(ids[k:])).replace(CONSTRAIN, ""))
        return self._emit(spill.replace(CONSTRAIN, ""))

    def _emit(self, text: str) -> list[Delta]:
        if not text or self._current is None:
            return []
        self._current.parts.append(text)
        return [Delta(self._current.channel, text, self._current.recipient, self._current.content_type)]

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
