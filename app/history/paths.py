"""Where the history database lives by default: the user data folder, never the models folder."""

from __future__ import annotations

from pathlib import Path

import platformdirs

DB_FILENAME = "history.sqlite3"


def default_db_path() -> Path:
    """``<user data dir>/Lantern/history.sqlite3``, e.g. ``~/.local/share/Lantern/history.sqlite3`` on Linux.

    The folder is not created here; HistoryStore creates it on open.
    """
    return Path(platformdirs.user_data_dir("Lantern", appauthor=False)) / DB_FILENAME
