"""Where the history database lives by default: the user data folder, never the models folder."""

from __future__ import annotations

from pathlib import Path

from app import paths

DB_FILENAME = "history.sqlite3"


def default_db_path() -> Path:
    """``<user data dir>/Lantern/history.sqlite3``, e.g. ``~/.local/share/Lantern/history.sqlite3`` on Linux
    (LANTERN_DATA_DIR overrides the folder, as everywhere in the app: `app.paths.history_db_path`).

    The folder is not created here; HistoryStore creates it on open.
    """
    return paths.history_db_path()
