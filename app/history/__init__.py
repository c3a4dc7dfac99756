"""Conversation history: SQLite (WAL) in the user data folder, messages as a tree, FTS5 search,
Markdown/JSON export and JSON import, real deletion. Qt-free."""

from app.history.errors import HistoryError, ImportFormatError, NotFound, SchemaTooNew
from app.history.models import INTERRUPTED_NOTE, Conversation, SearchHit, StoredMessage
from app.history.paths import default_db_path
from app.history.store import HistoryStore
from app.history.streaming import StreamingSaver

__all__ = [
    "Conversation", "HistoryError", "HistoryStore", "INTERRUPTED_NOTE", "ImportFormatError", "NotFound",
    "SchemaTooNew", "SearchHit", "StoredMessage", "StreamingSaver", "default_db_path",
]
