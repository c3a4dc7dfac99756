"""User actions -> worker requests and history writes; worker events -> state the widgets show.

Owns the chat's request ids: an event whose id is not the live turn's is dropped, so a stopped or
replaced turn can never write into the chat. Nothing is destroyed: regenerate and edit add siblings
in the history tree. Widgets read and change the history only through this controller's methods.
Which model is loaded is the ModelController's (app/model_controller.py); `model`/`loading` here
read it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, QTimer, Signal

from app.history.errors import HistoryError, NotFound
from app.history.models import ChatSettings
from app.history.streaming import StreamingSaver
from app.messages import ChatDelta, ChatFinished, ChatStarted, ChatUpdate, Event, LiveStats, Request, StartChat, WorkerFailed
from app.settings import SettingsStore
from app.tool_messages import ToolApprovalNeeded, ToolCallEvent, ToolResultEvent
from engine.types import Delta, Message, ModelInfo, Usage

log = logging.getLogger(__name__)

SAVE_INTERVAL_S = 1.0
"""A streaming reply is written to the history at most this often (and at its end)."""


class WorkerLike(Protocol):
    def submit(self, request: Request) -> None: ...

    def cancel(self) -> None: ...


@dataclass
class Turn:
    """One reply being generated."""

    request_id: int
    conversation_id: int
    message_id: int                    # the assistant StoredMessage being written
    saver: StreamingSaver              # writes it to the history at most every SAVE_INTERVAL_S
    analysis: str = ""
    final: str = ""
    tool_calls: list[tuple[str, str]] = field(default_factory=list)   # (recipient, arguments)
    tool_rounds: list[dict[str, Any]] = field(default_factory=list)   # calls with results (tools Lantern ran)
    pending_approval: tuple[int, str] | None = None                    # (call id, code) waiting for the user
    started_at: float = field(default_factory=time.monotonic)
    first_analysis_at: float | None = None
    first_final_at: float | None = None
    stop_requested: bool = False
    max_tokens: int = 0                # the reply limit it runs under (for the "cut off" note)
    stats: LiveStats | None = None     # the latest prefill/decode progress
    max_context: int = 0               # the loaded model's context (for the meter)

    @property
    def thought_seconds(self) -> float | None:
        """Seconds from the first reasoning text to the first answer text (None while thinking)."""
        if self.first_analysis_at is None or self.first_final_at is None:
            return None
        return self.first_final_at - self.first_analysis_at


def usage_dict(usage: Usage, thought_seconds: float | None, max_tokens: int | None = None,
               max_context: int | None = None, note: str | None = None) -> dict[str, Any]:
    """What is stored with a reply: the engine's Usage, plus the thinking time, the reply limit it ran
    under (for the "cut off" note), the model's context (so reopening the chat shows the meter) and a
    remark to show with it (e.g. "Reasoning was not available from <server>")."""
    data: dict[str, Any] = dataclasses.asdict(usage)
    if thought_seconds is not None:
        data["thought_seconds"] = round(thought_seconds, 2)
    if max_tokens:
        data["max_tokens"] = int(max_tokens)
    if max_context:
        data["max_context"] = int(max_context)
    if note:
        data["note"] = note
    return data


def context_used(thread: list[Any]) -> tuple[int, int] | None:
    """(tokens, context) the last reply of `thread` left in the model's context, if it recorded them."""
    for m in reversed(thread):
        usage = getattr(m, "usage", None) or {}
        if m.role == "assistant" and usage.get("prompt_tokens"):
            return int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0)), \
                int(usage.get("max_context", 0))
    return None


class ChatController(QObject):
    """The window's chat logic, kept apart from its widgets (tests drive it directly)."""

    conversations_changed = Signal()
    thread_changed = Signal()                 # the shown thread must be rebuilt
    turn_updated = Signal(object)             # Turn: new streamed text or progress
    turn_finished = Signal(object, object)    # ChatFinished, Turn
    model_changed = Signal()                  # re-sent from the ModelController (scripts listen here)
    chat_settings_changed = Signal()          # the shown chat's effort/instructions changed
    error = Signal(str, str)                  # message, kind ("user" | "bug")
    tool_approval_needed = Signal(object)     # Turn (turn.pending_approval is set)

    def __init__(self, store: Any, settings: SettingsStore, worker: WorkerLike, models: Any = None) -> None:
        super().__init__()
        self.store = store
        self.settings = settings
        self.worker = worker
        self.models = models
        self._ids = itertools.count(1)
        self.conversation_id: int | None = None
        self.thread: list[Any] = []
        self.turn: Turn | None = None
        self._chat_request_ids: set[int] = set()   # every StartChat sent (to drop failures of abandoned turns)
        self.last_usage: Usage | None = None
        self._new_chat_settings = ChatSettings()   # for a chat not created yet (made on its first send)
        self.tools: Any = None                    # app.tools_controller.ToolsController (Application sets it)
        # Deltas trigger the streaming saver's writes; this timer makes a pause in them save too.
        self._save_timer = QTimer(self)
        self._save_timer.timeout.connect(self._poll_saver)

    # ------------------------------------------------------------------ model (the ModelController's)

    @property
    def model(self) -> ModelInfo | None:
        return self.models.model if self.models is not None else None

    @property
    def loading(self) -> Path | None:
        state = self.models.loading if self.models is not None else None
        return state.path if state is not None else None

    @property
    def loading_label(self) -> str | None:
        """What is loading, as the user calls it (a folder's name, or "<model> on <host>")."""
        state = self.models.loading if self.models is not None else None
        return state.label if state is not None else None

    def load_model(self, model_dir: Path) -> None:
        """Load without the memory question (scripts, the self-test); the window asks first."""
        if self.turn is not None:
            self.stop()
        self.models.load_now(Path(model_dir))

    def load_remote(self, target: Any) -> None:
        """Use a model on a server the user added (an app.remote.target.RemoteTarget): no weights load."""
        if self.turn is not None:
            self.stop()
        self.models.load_remote(target)

    def unload_model(self) -> None:
        if self.turn is not None:
            self.stop()
        self.models.unload()

    @property
    def busy(self) -> bool:
        return self.turn is not None

    def composer_block_reason(self) -> str | None:
        """Why the user cannot send now, or None if they can."""
        if self.loading_label is not None:
            return f"Loading {self.loading_label}…"
        if self.model is None:
            return "No model loaded. Open one with Models… (Ctrl+M) or Open model folder… (Ctrl+O)."
        return None

    # ------------------------------------------------------------------ history, for the widgets

    def list_conversations(self) -> list[Any]:
        return list(self.store.list_conversations())

    def search(self, query: str) -> list[Any]:
        return list(self.store.search(query))

    def conversation_title(self, conversation_id: int | None = None) -> str | None:
        cid = self.conversation_id if conversation_id is None else conversation_id
        if cid is None:
            return None
        try:
            return self.store.get_conversation(cid).title
        except NotFound:
            return None

    def export_text(self, kind: str) -> str:
        """The shown chat as Markdown ("md") or JSON ("json")."""
        assert self.conversation_id is not None
        if kind == "md":
            return str(self.store.export_markdown(self.conversation_id))
        return json.dumps(self.store.export_json(self.conversation_id), indent=2, ensure_ascii=False)

    def import_chat(self, path: Path) -> int:
        """Add the chat of an exported JSON file as a new chat and open it. Raises HistoryError
        (ImportFormatError: not a Lantern export), OSError or ValueError (not JSON) for the user."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        conversation = self.store.import_json(data)
        self.conversations_changed.emit()
        self.open_conversation(conversation.id)
        return int(conversation.id)

    def context_used(self) -> tuple[int, int] | None:
        """(tokens, context) the shown chat's last reply left in the context (the meter on reopening)."""
        return context_used(self.thread)

    def recovered_conversation(self) -> int | None:
        """The chat holding the newest reply that a crash cut off (found when the history opened)."""
        ids = getattr(self.store, "recovered_ids", ())
        for message_id in sorted(ids, reverse=True):
            try:
                return int(self.store.get_message(message_id).conversation_id)
            except NotFound:
                continue
        return None

    # ------------------------------------------------------------------ per-chat settings

    @property
    def chat_settings(self) -> ChatSettings:
        """The shown chat's own effort/instructions (None fields: the defaults from Settings)."""
        if self.conversation_id is None:
            return self._new_chat_settings
        try:
            return self.store.get_conversation(self.conversation_id).settings
        except NotFound:
            return ChatSettings()

    @property
    def effective_effort(self) -> str:
        return self.chat_settings.reasoning_effort or self.settings.settings.reasoning_effort

    @property
    def effective_instructions(self) -> str:
        own = self.chat_settings.instructions
        return own if own is not None else self.settings.settings.instructions

    def set_chat_settings(self, settings: ChatSettings) -> None:
        if self.conversation_id is None:
            self._new_chat_settings = settings
        else:
            with self._history_writes():
                self.store.set_chat_settings(self.conversation_id, settings)
        self.chat_settings_changed.emit()

    def set_chat_effort(self, effort: str | None) -> None:
        """This chat's reasoning effort (None or the default's value: follow the default)."""
        current = self.chat_settings
        own = None if effort in (None, self.settings.settings.reasoning_effort) else effort
        self.set_chat_settings(ChatSettings(own, current.instructions))

    def set_chat_instructions(self, text: str | None) -> None:
        """This chat's instructions (None: the default from Settings; "" means none at all)."""
        self.set_chat_settings(ChatSettings(self.chat_settings.reasoning_effort, text))

    def save_preset(self, name: str, text: str) -> None:
        presets = tuple(p for p in self.settings.settings.instruction_presets if p[0] != name.strip())
        self.settings.update(instruction_presets=presets + ((name.strip(), text),))

    # ------------------------------------------------------------------ conversations

    def new_chat(self) -> None:
        """An empty chat; the conversation is created on the first send so empty ones don't pile up."""
        self.conversation_id = None
        self.thread = []
        self._new_chat_settings = ChatSettings()
        self.thread_changed.emit()
        self.chat_settings_changed.emit()

    def ensure_conversation(self) -> int:
        """The shown chat's id, creating the (empty) chat first if needed (e.g. to attach files to it)."""
        if self.conversation_id is None:
            self._create_conversation()
            self.conversations_changed.emit()
        return int(self.conversation_id)  # type: ignore[arg-type]

    def _create_conversation(self) -> None:
        """The shown new chat becomes a stored one, with the settings chosen for it so far."""
        self.conversation_id = self.store.create_conversation().id
        if self._new_chat_settings.to_json():
            self.store.set_chat_settings(self.conversation_id, self._new_chat_settings)
        self._new_chat_settings = ChatSettings()

    def open_conversation(self, conversation_id: int) -> None:
        self.conversation_id = conversation_id
        self.reload_thread()

    def open_message(self, conversation_id: int, message_id: int) -> None:
        """Open a chat on the branch that holds `message_id` (a search hit may be in another version)."""
        if self.turn is None or self.turn.conversation_id != conversation_id:
            self.store.select_branch(message_id)
        self.open_conversation(conversation_id)

    def reload_thread(self) -> None:
        self.thread = self.store.thread(self.conversation_id) if self.conversation_id is not None else []
        self.thread_changed.emit()
        self.chat_settings_changed.emit()

    def rename(self, conversation_id: int, title: str) -> None:
        self.store.rename_conversation(conversation_id, title.strip())
        self.conversations_changed.emit()

    def delete(self, conversation_id: int) -> None:
        if self.turn is not None and self.turn.conversation_id == conversation_id:
            self.stop()
            self.turn = None
        self.store.delete_conversation(conversation_id)
        if self.tools is not None:
            self.tools.delete_chat(conversation_id)
        if self.conversation_id == conversation_id:
            self.new_chat()
        self.conversations_changed.emit()

    def fork(self) -> int | None:
        """Copy the shown branch to a new chat and open it."""
        if self.conversation_id is None or not self.thread:
            return None
        conversation = self.store.fork(self.conversation_id, self.thread[-1].id)
        self.conversations_changed.emit()
        self.open_conversation(conversation.id)
        return int(conversation.id)

    def siblings(self, message_id: int) -> list[Any]:
        return list(self.store.siblings(message_id))

    def switch_sibling(self, message_id: int, step: int) -> None:
        """Show the previous/next version of a message (and the newest branch below it)."""
        siblings = self.siblings(message_id)
        ids = [m.id for m in siblings]
        if message_id not in ids or len(ids) < 2:
            return
        target = ids[(ids.index(message_id) + step) % len(ids)]
        self.store.select_branch(target)  # the active leaf becomes the newest leaf below that version
        self.reload_thread()

    # ------------------------------------------------------------------ turns

    def send(self, text: str) -> bool:
        """Add a user message under the shown thread and start a reply. False if not possible now."""
        text = text.strip()
        if not text or self.turn is not None or self.composer_block_reason() is not None:
            return False
        with self._history_writes():
            if self.conversation_id is None:
                self._create_conversation()
            parent = self.thread[-1].id if self.thread else None
            user = self.store.add_message(self.conversation_id, parent, "user", text)  # the first one titles the chat
            if self.tools is not None:
                self.tools.on_user_message(self.conversation_id, user.id)   # attachments go with it
            self._start_reply(user.id)
            self.conversations_changed.emit()
            return True
        return False

    @contextlib.contextmanager
    def _history_writes(self) -> Iterator[None]:
        """Around a user action that writes the history: a failed write (disk full, a locked or damaged
        file) is reported instead of escaping the GUI slot, and the action counts as not done."""
        try:
            yield
        except (sqlite3.Error, HistoryError, OSError) as error:
            log.exception("history write failed")
            self.error.emit(f"Could not save to the chat history: {error}", "user")
            with contextlib.suppress(Exception):
                self.reload_thread()

    def regenerate(self, message_id: int | None = None) -> bool:
        """A new sibling reply to the same user message (default: the last reply shown)."""
        if self.turn is not None or self.model is None or self.conversation_id is None:
            return False
        replies = [m for m in self.thread if m.role == "assistant"]
        target = next((m for m in self.thread if m.id == message_id), None) if message_id else \
            (replies[-1] if replies else None)
        if target is None or target.role != "assistant" or target.parent_id is None:
            return False
        with self._history_writes():
            self._start_reply(target.parent_id)
            return True
        return False

    def edit_and_resend(self, message_id: int, text: str) -> bool:
        """A new sibling of a user message with the edited text, and a reply to it."""
        text = text.strip()
        original = next((m for m in self.thread if m.id == message_id), None)
        if (not text or original is None or original.role != "user" or self.turn is not None
                or self.model is None or self.conversation_id is None):
            return False
        with self._history_writes():
            user = self.store.add_message(self.conversation_id, original.parent_id, "user", text)
            self._start_reply(user.id)
            return True
        return False

    def stop(self) -> None:
        if self.turn is not None:
            self.turn.stop_requested = True
            self.worker.cancel()

    def _start_reply(self, parent_id: int) -> None:
        assert self.conversation_id is not None
        model = self.model
        saver = StreamingSaver.start(self.store, self.conversation_id, parent_id, interval_s=SAVE_INTERVAL_S,
                                     model=model.name if model is not None else None,
                                     remote_host=getattr(model, "remote_host", None))
        self.thread = self.store.thread(self.conversation_id)  # add_message made the reply the active leaf
        rid = next(self._ids)
        s = self.settings.settings
        self.turn = Turn(rid, self.conversation_id, saver.message_id, saver, max_tokens=s.max_tokens,
                         max_context=self.model.max_context if self.model is not None else 0)
        self._chat_request_ids.add(rid)
        self._save_timer.start(max(20, int(SAVE_INTERVAL_S * 500)))  # half the bound: writes lag <= 1.5x
        params, tools, inline = s.generation_params(reasoning_effort=self.effective_effort), None, None
        if self.tools is not None:   # attachments and tool switches (app/tools_controller.py)
            params, tools = self.tools.prepare(self.conversation_id, params)
            inline = self.tools.inline_texts(self.conversation_id)
        history = self._engine_messages(self.thread[:-1], self.effective_instructions, inline)
        self.worker.submit(StartChat(rid, str(self.conversation_id), tuple(history), params, tools))
        self.thread_changed.emit()

    @staticmethod
    def _engine_messages(thread: list[Any], instructions: str,
                         inline: dict[int, list[tuple[str, str]]] | None = None) -> list[Message]:
        """What the model sees: instructions, then each message's answer text (earlier reasoning is
        dropped, as the harmony format asks); failed empty replies are left out. `inline[message_id]`:
        the (name, text) of files attached to a user message, added after its text."""
        from app.tools_controller import inline_block

        out: list[Message] = [Message("developer", instructions)] if instructions.strip() else []
        for m in thread:
            if m.role == "assistant":
                if m.content:
                    out.append(Message("assistant", m.content, channel="final"))
            elif m.role in ("user", "developer", "system"):
                files = inline.get(m.id, []) if inline and m.role == "user" else []
                out.append(Message(m.role, "\n\n".join([m.content, *(inline_block(n, t) for n, t in files)])))
        return out

    # ------------------------------------------------------------------ worker events

    def on_event(self, event: Event) -> None:
        """Slot for the worker's chat events (runs on the GUI thread)."""
        if isinstance(event, (ChatStarted, ChatDelta, ChatUpdate, ChatFinished)):
            if self.turn is None or event.request_id != self.turn.request_id:
                log.debug("dropped stale %s", type(event).__name__)
                return
            if isinstance(event, ChatStarted):
                if self.turn.stop_requested:  # stop pressed before the worker took the turn
                    self.worker.cancel()
            elif isinstance(event, ChatDelta):
                self._on_update(self.turn, (Delta(event.channel, event.text, event.recipient),), None)  # type: ignore[arg-type]
            elif isinstance(event, ChatUpdate):
                self._on_update(self.turn, event.pieces, event.stats)
            else:
                self._on_finished(self.turn, event)
        elif isinstance(event, (ToolCallEvent, ToolApprovalNeeded, ToolResultEvent)):
            if self.turn is None or event.request_id != self.turn.request_id:
                return
            self._on_tool_event(self.turn, event)
        elif isinstance(event, WorkerFailed):
            if self.turn is not None and event.request_id not in (None, self.turn.request_id):
                return  # a failure of a turn nobody waits for any more
            if self.turn is None and event.request_id in self._chat_request_ids:
                return  # the failure of a turn already given up (its chat deleted while it ran)
            self.error.emit(event.message, event.kind)

    def _on_update(self, turn: Turn, pieces: tuple[Delta, ...], stats: LiveStats | None) -> None:
        now = time.monotonic()
        if stats is not None:
            turn.stats = stats
        for piece in pieces:
            try:
                turn.saver.add(piece.channel, piece.text, piece.recipient)
            except Exception as error:  # noqa: BLE001 - the text is kept; the next write retries
                log.warning("could not save the streaming reply: %s", error)
            if piece.recipient:  # a tool call's arguments: shown apart, never as the answer
                turn.tool_calls = turn.saver.tool_calls
                if turn.first_final_at is None:
                    turn.first_final_at = now   # the thinking is over: it decided to call a tool
            elif piece.channel == "analysis":
                turn.analysis += piece.text
                turn.first_analysis_at = turn.first_analysis_at or now
            else:  # final, or commentary addressed to the user (a preamble): answer text
                turn.final += piece.text
                if turn.first_final_at is None:
                    turn.first_final_at = now
        self.turn_updated.emit(turn)

    def _on_tool_event(self, turn: Turn, event: Any) -> None:
        """A tool call, a question before python runs, or a tool's result (app/tool_worker.py)."""
        saver = turn.saver
        try:
            if isinstance(event, ToolCallEvent):
                saver.record_tool_call(event.call_id, event.recipient, event.arguments)
            elif isinstance(event, ToolResultEvent):
                if event.browser_pages:
                    saver.set_browser_pages(event.browser_pages)   # resolves the answer's citations later
                saver.set_tool_result(event.call_id, event.author, event.output, event.status)
        except Exception as error:  # noqa: BLE001 - the next write retries
            log.warning("could not save the tool call: %s", error)
        if isinstance(event, ToolApprovalNeeded):
            turn.pending_approval = (event.call_id, event.code)
        elif isinstance(event, ToolResultEvent) and turn.pending_approval and turn.pending_approval[0] == event.call_id:
            turn.pending_approval = None
        turn.tool_calls = saver.tool_calls
        turn.tool_rounds = saver.tool_rounds
        if turn.first_final_at is None and isinstance(event, ToolCallEvent):
            turn.first_final_at = time.monotonic()
        self.turn_updated.emit(turn)
        if isinstance(event, ToolApprovalNeeded):
            self.tool_approval_needed.emit(turn)

    def answer_tool_approval(self, allow: bool, always: bool = False) -> None:
        """The user's answer to the live turn's python approval; `always`: allow for this chat from now on."""
        turn = self.turn
        if turn is None or turn.pending_approval is None:
            return
        call_id = turn.pending_approval[0]
        turn.pending_approval = None
        if always and allow and self.tools is not None:
            self.tools.set_python(turn.conversation_id, True, always=True)
        answer = getattr(self.worker, "answer_approval", None)
        if answer is not None:
            answer(turn.request_id, call_id, allow)
        self.turn_updated.emit(turn)

    def _poll_saver(self) -> None:
        if self.turn is None:
            self._save_timer.stop()
            return
        try:
            self.turn.saver.poll()
        except Exception as error:  # noqa: BLE001 - the next delta or the finish writes again
            log.warning("could not save the streaming reply: %s", error)

    def _on_finished(self, turn: Turn, event: ChatFinished) -> None:
        self._save_timer.stop()
        if turn.first_analysis_at is not None and turn.first_final_at is None:
            turn.first_final_at = time.monotonic()  # reasoning only (stopped/length): it still took time
        status = {"cancelled": "stopped", "error": "error"}.get(event.reason, "done")
        # The turn ends whatever the history does: a failed write must not leave the window busy forever.
        self.turn = None
        self.last_usage = event.usage
        try:
            turn.saver.finish(status, usage=usage_dict(event.usage, turn.thought_seconds, turn.max_tokens,
                                                       turn.max_context, getattr(event, "note", None)),
                              error=event.error if event.reason == "error" else None, finish_reason=event.reason)
            if self.conversation_id == turn.conversation_id:
                self.thread = self.store.thread(self.conversation_id)
        except Exception as error:  # noqa: BLE001 - sqlite (disk full, locked, I/O): tell the user, go on
            log.exception("could not save the finished reply")
            self.error.emit(f"The reply could not be saved to the chat history: {error}", "user")
        self.turn_finished.emit(event, turn)
        self.conversations_changed.emit()

    def shutdown(self) -> None:
        """Stop a live turn and keep what it wrote, marked stopped."""
        self._save_timer.stop()
        if self.turn is not None:
            turn, self.turn = self.turn, None
            self.worker.cancel()
            try:
                turn.saver.finish("stopped", usage=usage_dict(Usage(), turn.thought_seconds), finish_reason="cancelled")
            except Exception as error:  # noqa: BLE001 - quitting: the next start marks it stopped anyway
                log.warning("could not save the reply while quitting: %s", error)
