"""Command line for the model manager (no window): list, download, verify, import, delete.

    python -m app.models list
    python -m app.models download openai/gpt-oss-20b [--retries N] [--retry-wait SECONDS]
    python -m app.models verify ~/.local/share/Lantern/models/gpt-oss-20b

A download resumes what an earlier run (of this command or of the window) left. When the hub cannot
be reached it says so, waits and tries again, and after --retries failed tries it stops with exit
status 1; running the same command again goes on from there. HF_ENDPOINT picks another hub, HF_TOKEN
(or a stored `hf auth login`) is the access token. Exit status: 0 done, 1 the download did not
finish, 2 an error before it started, 130 stopped with Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from app.models.errors import ModelManagerError
from app.models.events import DownloadProgress, DownloadStateChanged, JobState, ManagerEvent, RetryScheduled
from app.models.manager import ModelManager, default_models_dir
from app.models.panel_text import progress_line

DEFAULT_RETRIES = 3
"""Tries after the first failed one before `download` gives up (a small number: a script must end)."""
DEFAULT_RETRY_WAIT_S = 60.0
PROGRESS_EVERY_S = 5.0
"""How often a progress line is printed when stderr is not a terminal."""


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.models", description=__doc__.splitlines()[0],
                                     epilog="Exit status: 0 done, 1 the download did not finish, 2 an error "
                                            "before it started, 130 stopped with Ctrl-C.")
    parser.add_argument("--models-dir", type=Path, default=None, help="models folder (default: Lantern's)")
    parser.add_argument("--offline", action="store_true", help="open no network connection")
    parser.add_argument("--context", type=int, default=8192, help="context length for the memory estimate")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="catalog with fit verdicts, and the models on disk")
    p = sub.add_parser("download", help="download (or resume) a catalog model")
    p.add_argument("repo_id", choices=["openai/gpt-oss-20b", "openai/gpt-oss-120b"])
    p.add_argument("--retries", type=_count, default=DEFAULT_RETRIES,
                   help=f"when the hub cannot be reached: how many times to try again before giving up "
                        f"(default {DEFAULT_RETRIES})")
    p.add_argument("--retry-wait", type=_seconds, default=DEFAULT_RETRY_WAIT_S, metavar="SECONDS",
                   help=f"how long to wait before each of those tries (default {DEFAULT_RETRY_WAIT_S:g})")
    for name, text in (("verify", "re-hash a model's files"), ("import", "list a folder in place"),
                       ("delete", "delete a downloaded model")):
        q = sub.add_parser(name, help=text)
        q.add_argument("folder", type=Path)
    return parser


class _DownloadReport:
    """What the command line prints while a download runs (stderr; the final line goes to stdout)."""

    def __init__(self, stream=sys.stderr) -> None:  # type: ignore[no-untyped-def]
        self.stream = stream
        self.tty = stream.isatty()
        self.last_message = ""
        self.last_progress = 0.0
        self.bar_open = False

    def _line(self, text: str) -> None:
        if self.bar_open:
            print(file=self.stream)
            self.bar_open = False
        print(text, file=self.stream, flush=True)

    def __call__(self, event: ManagerEvent) -> None:
        if isinstance(event, DownloadProgress):
            now = time.monotonic()
            if self.tty:
                print("\r" + progress_line(event.progress).ljust(60), end="", file=self.stream, flush=True)
                self.bar_open = True
            elif now - self.last_progress >= PROGRESS_EVERY_S:
                self.last_progress = now
                self._line(progress_line(event.progress))
        elif isinstance(event, RetryScheduled):
            tries = f" (retry {event.retry} of {event.retries})" if event.retries is not None else ""
            self._line(f"{event.reason.rstrip('.')}; retrying in {event.wait_s:g} s{tries}; Ctrl-C to stop.")
        elif isinstance(event, DownloadStateChanged):
            if (event.message and event.message != self.last_message
                    and event.state not in (JobState.RETRYING, JobState.DONE, JobState.ERROR)):
                self._line(event.message)
            self.last_message = event.message

    def close(self) -> None:
        if self.bar_open:
            print(file=self.stream)
            self.bar_open = False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    download = args.command == "download"
    manager = ModelManager(args.models_dir or default_models_dir(), offline=args.offline,
                           context_length=args.context,
                           auto_retry_s=args.retry_wait if download else None,
                           retry_limit=args.retries if download else None)
    try:
        if args.command == "list":
            from app.models.units import format_bytes

            for row in manager.catalog_rows():
                state = row.local.state.label if row.local else "not downloaded"
                print(f"{row.entry.repo_id:22} download {format_bytes(row.download_bytes):>9}  "
                      f"needs {format_bytes(row.fit.needed_bytes):>9}  {row.fit.verdict.label:22} {state}")
            for m in manager.local_models():
                print(f"{str(m.path):60} {format_bytes(m.size_bytes):>9}  {m.state.label}  {m.message}")
            usage = manager.disk_usage()
            print(f"models use {format_bytes(usage.models_bytes)}; {format_bytes(usage.free_bytes)} free")
        elif download:
            report = _DownloadReport()
            manager.subscribe(report)
            status = manager.download_blocking(args.repo_id)
            report.close()
            print(f"{status.state.value}: {status.message}")
            if status.state != JobState.DONE:
                print("To resume, run the same command again.", file=sys.stderr)
                return 1
            return 0
        elif args.command == "verify":
            result = manager.verify_report(args.folder)
            print(f"{result.model.state.label}: {result.message}")
            return 0 if result.ok else 1
        elif args.command == "import":
            print(manager.import_folder(args.folder).state.label)
        elif args.command == "delete":
            from app.models.units import format_bytes

            print(f"freed {format_bytes(manager.delete(args.folder))}")
    except ModelManagerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        manager.close()
        print("\nstopped; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        manager.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
