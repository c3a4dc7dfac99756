"""Dependency rules, checked in a fresh interpreter so that nothing else has imported torch yet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return set(out.split())


def test_engine_types_do_not_import_torch() -> None:
    mods = _modules_after("import engine\nfrom engine import Message, GenerationParams, ModelInfo, EngineError")
    assert "engine.types" in mods
    assert "torch" not in mods


def test_engine_config_does_not_import_torch() -> None:
    mods = _modules_after("import engine.config")
    assert "engine.config" in mods
    assert "torch" not in mods


def test_engine_never_imports_qt() -> None:
    code = "import pkgutil, importlib, engine\n"
    code += "for m in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
    code += "    importlib.import_module(m.name)\n"
    mods = _modules_after(code)
    assert not any(m.startswith("PySide6") for m in mods)


def test_api_server_does_not_import_torch() -> None:
    # the window imports the server on the GUI thread; torch only loads with a model, on the worker
    mods = _modules_after("import engine.server.app, engine.server.serve, engine.server.host")
    assert "engine.server.app" in mods
    assert "torch" not in mods
