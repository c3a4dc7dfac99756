"""The engine thread's side of tools: run a StartChat that carries tools through engine.tools.ToolLoop.

Qt-free. `tool_events(server, request, coalescer)` yields the loop's Delta and Finished events for
the worker to stream as usual, and emits the tool events (app/tool_messages.py) itself, flushing
the coalescer first so the GUI sees the call's arguments before the call. A python run waits in
`Approvals` until the GUI answers (or the turn is stopped: then it is refused).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from app.tool_approvals import Approvals
from app.tool_messages import ToolApprovalNeeded, ToolCallEvent, ToolResultEvent
from engine.tools.chat_tools import ChatToolsRegistry
from engine.tools.roundtrip import ToolCall, ToolCallFinished, ToolCallStarted, ToolLoop
from engine.types import ChatEvent

log = logging.getLogger(__name__)


class WorkerTools:
    """The engine thread's open chats' tools."""

    def __init__(self, approvals: Approvals | None) -> None:
        self.registry = ChatToolsRegistry()
        self.approvals = approvals or Approvals()
        self.approvals.on_cancel.append(self.registry.interrupt)

    def close(self) -> None:
        self.registry.close()


def tool_events(server: Any, request: Any, coalescer: Any) -> Iterator[ChatEvent]:
    if server.tools is None:
        server.tools = WorkerTools(getattr(server, "approvals", None))
    tools: WorkerTools = server.tools
    spec = request.tools
    rid = request.request_id

    def approve(call: ToolCall) -> bool:
        if getattr(spec, "python_always", False):
            return True
        coalescer.flush()
        server.emit(ToolApprovalNeeded(rid, call.call_id, call.arguments))
        return tools.approvals.wait(rid, call.call_id, server.cancel_event)

    if getattr(spec, "forget", False):
        tools.registry.forget(spec.folder)
    box = tools.registry.toolbox(spec, approve)
    loop = ToolLoop(server.engine, server.session, box)
    for event in loop.run(request.messages, request.params, server.cancel_event.is_set):
        if isinstance(event, ToolCallStarted):
            coalescer.flush()
            c = event.call
            server.emit(ToolCallEvent(rid, c.call_id, c.recipient, c.target.kind, c.arguments))
        elif isinstance(event, ToolCallFinished):
            pages = tuple(box.browser.pages()) if box.browser is not None else ()
            server.emit(ToolResultEvent(rid, event.call.call_id, event.author, event.output, event.status, pages))
        else:
            yield event
