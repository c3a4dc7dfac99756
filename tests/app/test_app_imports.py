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
