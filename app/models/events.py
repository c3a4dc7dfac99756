"""Events the manager sends to its listeners (from worker threads; the Qt panel queues them)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from app.models.downloader import ProgressSnapshot


class JobState(str, Enum):
    PREPARING = "preparing"       # asking the hub for the file list
    DOWNLOADING = "downloading"
    RETRYING = "retrying"         # the connection failed: waiting to try again (the thread is alive)
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
class RetryScheduled:
    """A download could not reach the hub (or lost it) and tries again after `wait_s`."""

    repo_id: str
    reason: str                   # what failed, in words ("Cannot reach the hub (…): the connection was refused.")
    wait_s: float
    retry: int                    # 1 for the first retry
    retries: int | None           # the most retries before it gives up; None: until stopped


@dataclass(frozen=True, slots=True)
class TaskProgress:
    """A verify running on the download queue's worker: bytes read so far."""

    kind: str                     # "verify"
    path: Path
    done_bytes: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class TaskFinished:
    """A verify or delete of a model folder ended; `message` says the result in words."""

    kind: str                     # "verify" | "delete"
    path: Path
    ok: bool
    message: str


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


ManagerEvent = (DownloadProgress | DownloadStateChanged | RetryScheduled | TaskProgress | TaskFinished | ModelsChanged
                | MoveProgress | MoveFinished)
