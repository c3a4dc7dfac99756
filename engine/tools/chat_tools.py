"""One chat's tools on disk, and the open ones: its folder holds the document index and Python's folder.

    <chat folder>/index.sqlite3   the browser's documents (engine.tools.index)
    <chat folder>/data/           the python tool's working folder (/mnt/data in the sandbox)

`ChatToolsRegistry` keeps the open chats' indexes and kernels (at most `max_kernels` kernels at
once; the least recently used is stopped) and builds the `ToolBox` of a reply.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.tools.browser import LocalBrowser
from engine.tools.index import DocumentIndex
from engine.tools.python_sandbox import PythonSession, SandboxLimits
from engine.tools.roundtrip import ToolBox, ToolCall

log = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite3"
DATA_DIR = "data"


@dataclass(frozen=True)
class ChatToolsRequest:
    """What one reply may use (sent with the chat request from the window to the engine's thread)."""

    folder: Path                                   # the chat's tools folder
    browser: bool = False                          # documents are attached: answer browser calls
    python: bool = False                           # the user let the model run Python in this chat
    python_files: tuple[tuple[str, Path], ...] = ()   # attachments the kernel sees (read-only)
    python_always: bool = False                    # "Allow for this chat": run without asking


class ChatTools:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._index: DocumentIndex | None = None
        self.python: PythonSession | None = None

    @property
    def index(self) -> DocumentIndex:
        if self._index is None:
            self._index = DocumentIndex(self.folder / INDEX_FILE)
        return self._index

    def python_session(self, files: Sequence[tuple[str, Path]], limits: SandboxLimits) -> PythonSession:
        files = [(n, Path(p)) for n, p in files]
        if self.python is not None and self.python.attachments != files:
            self.python.close()       # the attachments changed: a new sandbox shows the new set
            self.python = None
        if self.python is None:
            self.python = PythonSession(self.folder / DATA_DIR, attachments=files, limits=limits)
        return self.python

    def close(self) -> None:
        if self.python is not None:
            self.python.close()
            self.python = None
        if self._index is not None:
            self._index.close()
            self._index = None


class ChatToolsRegistry:
    def __init__(self, *, max_kernels: int = 2, limits: SandboxLimits = SandboxLimits()) -> None:
        self.max_kernels = max_kernels
        self.limits = limits
        self._chats: OrderedDict[Path, ChatTools] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, folder: Path) -> ChatTools:
        folder = Path(folder)
        with self._lock:
            tools = self._chats.pop(folder, None) or ChatTools(folder)
            self._chats[folder] = tools
            return tools

    def toolbox(self, request: ChatToolsRequest, approve: Callable[[ToolCall], bool]) -> ToolBox:
        tools = self.get(request.folder)
        browser = LocalBrowser(tools.index) if request.browser else None
        python = tools.python_session(request.python_files, self.limits) if request.python else None
        if python is not None:
            self._limit_kernels(keep=tools)
        return ToolBox(browser=browser, python=python, approve=approve)

    def _limit_kernels(self, keep: ChatTools) -> None:
        with self._lock:
            running = [t for t in self._chats.values() if t.python is not None and t is not keep]
        for tools in running[: max(0, len(running) + 1 - self.max_kernels)]:
            log.info("stopping the python kernel of %s (too many open)", tools.folder)
            tools.python.close()  # type: ignore[union-attr]
            tools.python = None

    def interrupt(self) -> None:
        """Stop whatever Python runs now (the user pressed Stop)."""
        with self._lock:
            sessions = [t.python for t in self._chats.values() if t.python is not None]
        for s in sessions:
            s.interrupt()

    def forget(self, folder: Path, *, delete: bool = False) -> None:
        """Close a chat's tools; with `delete`, remove its folder (the chat was deleted)."""
        with self._lock:
            tools = self._chats.pop(Path(folder), None)
        if tools is not None:
            tools.close()
        if delete:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            chats, self._chats = list(self._chats.values()), OrderedDict()
        for tools in chats:
            tools.close()
