"""Where things live: bundled resources (repo or PyInstaller bundle) and the user's folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "Lantern"


def resource_path(*parts: str) -> Path:
    """A file under resources/, both from a checkout and from a frozen (PyInstaller) build."""
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[1]))
    return base.joinpath("resources", *parts)


def config_dir() -> Path:
    """Settings folder; LANTERN_CONFIG_DIR overrides it (tests, portable installs)."""
    return Path(os.environ.get("LANTERN_CONFIG_DIR") or platformdirs.user_config_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    """Chat history and default models folder; LANTERN_DATA_DIR overrides it."""
    return Path(os.environ.get("LANTERN_DATA_DIR") or platformdirs.user_data_dir(APP_NAME, appauthor=False))


def history_db_path() -> Path:
    return data_dir() / "history.sqlite3"   # == app.history.paths.DB_FILENAME


def default_models_dir() -> Path:
    return data_dir() / "models"


def log_path() -> Path:
    """The app's log file (a windowed build has no console to print tracebacks to)."""
    return data_dir() / "logs" / "lantern.log"


def documents_dir() -> Path:
    """Where file dialogs for exports and imports open: the user's documents folder (home if none)."""
    try:
        folder = Path(platformdirs.user_documents_dir())
    except Exception:  # noqa: BLE001 - an odd desktop setup: the home folder will do
        folder = Path.home()
    return folder if folder.is_dir() else Path.home()
