"""Entry point for `python -m app`, the `lantern` script and PyInstaller builds."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from app import __version__


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lantern", description="Private, offline chat with gpt-oss.")
    parser.add_argument("--version", action="version", version=f"Lantern {__version__}")
    parser.add_argument("--no-autoload", action="store_true", help="do not load the last model at start")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--self-test", action="store_true",
                        help="show the window, report whether torch was imported before it appeared, quit "
                             "(with --model: also load it and stream one short reply); settings untouched")
    parser.add_argument("--model", type=Path, default=None, help="model folder for --self-test")
    parser.add_argument("--licenses", action="store_true",
                        help="print what this build includes and under which licenses (as Help > About shows), quit")
    return parser.parse_args(argv)


def _setup_logging(level: str, *, to_file: bool) -> None:
    """Log to stderr and, for real runs, to a rotating file in the data folder (see app.paths.log_path)."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if to_file:
        from logging.handlers import RotatingFileHandler

        from app.paths import log_path

        try:
            log_path().parent.mkdir(parents=True, exist_ok=True)
            handlers.append(RotatingFileHandler(log_path(), maxBytes=2_000_000, backupCount=3, encoding="utf-8"))
        except OSError as error:  # a read-only home must not stop the app
            print(f"lantern: cannot write the log file: {error}", file=sys.stderr)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers)


def log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: object) -> None:
    """sys.excepthook: an exception escaping a Qt slot goes to the log file with its traceback (a
    windowed build has no console, so the default hook's stderr print would be lost)."""
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)  # type: ignore[arg-type]
        return
    logging.getLogger("lantern.uncaught").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.licenses:
        from app.licenses import components

        for item in components():
            print(f"{item.kind}\t{item.name}\t{item.version}\t{item.license}")
        return 0
    _setup_logging(args.log_level, to_file=not args.self_test)
    sys.excepthook = log_uncaught
    from app.qt_platform import check as check_qt_platform

    problem = check_qt_platform()  # before Qt: a plugin that cannot load aborts the process
    if problem is not None:
        print(problem.message(), file=sys.stderr, flush=True)
        return 2
    from PySide6.QtWidgets import QApplication

    from app.application import Application

    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    qapp.setApplicationName("Lantern")
    qapp.setApplicationDisplayName("Lantern")
    qapp.setApplicationVersion(__version__)
    qapp.setDesktopFileName("lantern")  # matches lantern.desktop (Wayland picks the icon from it)
    from app.widgets.about_dialog import app_icon

    qapp.setWindowIcon(app_icon())
    if args.self_test:
        from app.self_test import run_self_test

        return run_self_test(qapp, args.model)  # type: ignore[arg-type]
    application = Application(qapp)  # type: ignore[arg-type]
    application.start(autoload=not args.no_autoload)
    code = int(qapp.exec())
    if not application.worker_joined:
        # The worker is stuck in a model load; the history is closed and saved. Skip the
        # interpreter's teardown, which would destroy a running QThread and abort.
        logging.getLogger(__name__).warning("exiting while the engine thread is still busy")
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
