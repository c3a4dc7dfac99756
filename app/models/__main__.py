"""Command line for the model manager (no window): list, download, verify, import, delete.

    python -m app.models list
    python -m app.models download openai/gpt-oss-20b
    python -m app.models verify ~/.local/share/Lantern/models/gpt-oss-20b
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from app.models.errors import ModelManagerError
from app.models.events import DownloadProgress, ManagerEvent
from app.models.manager import ModelManager, default_models_dir
from app.models.panel_text import progress_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.models", description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=None, help="models folder (default: Lantern's)")
    parser.add_argument("--offline", action="store_true", help="open no network connection")
    parser.add_argument("--context", type=int, default=8192, help="context length for the memory estimate")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="catalog with fit verdicts, and the models on disk")
    p = sub.add_parser("download", help="download (or resume) a catalog model")
    p.add_argument("repo_id", choices=["openai/gpt-oss-20b", "openai/gpt-oss-120b"])
    for name, text in (("verify", "re-hash a model's files"), ("import", "list a folder in place"),
                       ("delete", "delete a downloaded model")):
        q = sub.add_parser(name, help=text)
        q.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    manager = ModelManager(args.models_dir or default_models_dir(), offline=args.offline,
                           context_length=args.context)
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
        elif args.command == "download":
            def show(event: ManagerEvent) -> None:
                if isinstance(event, DownloadProgress):
                    print("\r" + progress_line(event.progress).ljust(60), end="", file=sys.stderr, flush=True)

            manager.subscribe(show)
            status = manager.download_blocking(args.repo_id)
            print(file=sys.stderr)
            print(f"{status.state.value}: {status.message}")
            return 0 if status.state.value == "done" else 1
        elif args.command == "verify":
            m = manager.verify(args.folder)
            print(f"{m.state.label}: {m.message}")
            return 0 if m.usable else 1
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
