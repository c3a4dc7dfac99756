"""Events the manager sends to its listeners (from worker threads; the Qt panel queues them)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from app.models.downloader import ProgressSnapshot


class JobState(str, Enum):
    PREPARING = "preparing"       # asking the hub for the file list
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    ERROR = "error"
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    repo_id: str
    progress: ProgressSnapshot


@dataclass(frozen=True, slots=True)
class DownloadStateChanged:
    repo_id: str
    state: JobState
    message: str = ""


@dataclass(frozen=True, slots=True)
class ModelsChanged:
    """The list of local models or their states changed: re-read them."""


@dataclass(frozen=True, slots=True)
class MoveProgress:
    done_bytes: int
    total_bytes: int
    current_file: str


@dataclass(frozen=True, slots=True)
class MoveFinished:
    new_dir: Path | None          # None when the move failed
    message: str


ManagerEvent = DownloadProgress | DownloadStateChanged | ModelsChanged | MoveProgress | MoveFinished
