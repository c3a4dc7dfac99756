"""Lantern's desktop app (PySide6). Never imports torch: the engine runs on a worker thread."""

from __future__ import annotations


def _version() -> str:
    """The version, from one source: pyproject.toml (as installed package metadata, which PyInstaller
    builds carry too; read from pyproject.toml itself in a checkout that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lantern")
    except PackageNotFoundError:
        pass
    import tomllib
    from pathlib import Path

    try:
        with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


__version__ = _version()
