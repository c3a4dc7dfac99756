"""app/ never imports torch at import time (the window must appear before torch's import cost)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_every_app_module_does_not_import_torch() -> None:
    code = (
        "import importlib, pkgutil, sys, app\n"
        "names = [m.name for m in pkgutil.walk_packages(app.__path__, 'app.')]\n"
        "for n in names:\n"
        "    importlib.import_module(n)\n"
        "print(len(names), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    count, torch_loaded = out.stdout.split()
    assert int(count) >= 10 and torch_loaded == "False"


def test_uncaught_exceptions_go_to_the_log(caplog) -> None:  # noqa: ANN001
    """The hook main() installs: a slot's exception lands in the log file with its traceback."""
    import logging

    from app.__main__ import log_uncaught

    try:
        1 / 0
    except ZeroDivisionError as exc:
        with caplog.at_level(logging.CRITICAL, logger="lantern.uncaught"):
            log_uncaught(type(exc), exc, exc.__traceback__)
    [record] = [r for r in caplog.records if r.name == "lantern.uncaught"]
    assert record.levelno == logging.CRITICAL and "ZeroDivisionError" in caplog.text and "1 / 0" in caplog.text
