"""Stored responses for `previous_response_id`: one SQLite file the user may delete at any time.

Each row holds the response as returned and the conversation items it continues from (the
previous chain, this request's input, its output), so a follow-up needs only its own new input.
`store: false` requests are not written. Deleting the file (or a row, DELETE /v1/responses/{id})
forgets them; nothing else refers to it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import platformdirs

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    response TEXT NOT NULL,   -- the Response object (JSON)
    items TEXT NOT NULL       -- the conversation up to and including this response's output (JSON list)
)
"""


def default_store_path() -> Path:
    """`api-responses.sqlite3` in Lantern's data folder (LANTERN_DATA_DIR overrides it, as for the app)."""
    base = os.environ.get("LANTERN_DATA_DIR") or platformdirs.user_data_dir("Lantern", appauthor=False)
    return Path(base) / "api-responses.sqlite3"


class ResponseStore:
    """Thread-safe; `path=None` keeps everything in memory (gone when the server stops)."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute(SCHEMA)

    def put(self, response: dict[str, Any], items: list[dict[str, Any]]) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                             (response["id"], time.time(), json.dumps(response), json.dumps(items)))

    def get(self, response_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        with self._lock:
            row = self._db.execute("SELECT response, items FROM responses WHERE id = ?", (response_id,)).fetchone()
        return None if row is None else (json.loads(row[0]), json.loads(row[1]))

    def delete(self, response_id: str) -> bool:
        with self._lock, self._db:
            return self._db.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
