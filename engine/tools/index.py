"""A chat's documents and their full-text index: one SQLite file (FTS5, BM25 ranking).

Each document is kept whole (its extracted text, for `browser.open`) and cut into chunks of
about `CHUNK_CHARS` characters along line boundaries; the chunks are indexed with FTS5 (Porter
stemming over the unicode61 tokenizer, accents folded), and titles apart. A search ranks documents
by BM25 (their best chunk, plus their title counted twice) and returns each with a snippet.

Every document has a URL the browser shows: `https://docs.local/<id>/<file name>`. It is only a
name (nothing ever connects to it); its host, `docs.local`, is what the search page shows as the
source of a hit, and an http(s) form is what the reference browser's link code understands.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from engine.tools.extract import ExtractedDocument

URL_SCHEME = "https"
URL_HOST = "docs.local"   # a name that is never looked up: nothing here opens a connection
CHUNK_CHARS = 1200
SNIPPET_TOKENS = 40
TITLE_WEIGHT = 2.0

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS documents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        title TEXT NOT NULL,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        text TEXT NOT NULL,
        page_starts TEXT NOT NULL DEFAULT '',
        added_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        start_line INTEGER NOT NULL,
        title TEXT NOT NULL,
        text TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id)",
    """CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
        text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
    )""",
    """CREATE VIRTUAL TABLE IF NOT EXISTS titles_fts USING fts5(
        title, name, content='documents', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS documents_ai AFTER INSERT ON documents BEGIN
        INSERT INTO titles_fts(rowid, title, name) VALUES (new.id, new.title, new.name);
    END""",
    """CREATE TRIGGER IF NOT EXISTS documents_ad AFTER DELETE ON documents BEGIN
        INSERT INTO titles_fts(titles_fts, rowid, title, name) VALUES ('delete', old.id, old.title, old.name);
    END""",
)


@dataclass(frozen=True)
class Document:
    id: int
    name: str          # the file name (or path inside an attached folder)
    title: str
    kind: str
    source: str        # where it came from (the attachment's path), for the user
    text: str
    page_starts: tuple[int, ...] = ()

    @property
    def url(self) -> str:
        return document_url(self.id, self.name)


@dataclass(frozen=True)
class SearchHit:
    doc_id: int
    title: str
    url: str
    snippet: str       # whitespace collapsed
    start_line: int    # the best chunk's first line in the document text
    score: float       # BM25 (lower is better, as SQLite reports it)


def document_url(doc_id: int, name: str) -> str:
    return f"{URL_SCHEME}://{URL_HOST}/{doc_id}/{quote(name)}"


def parse_document_url(url: str) -> int | None:
    """The document id in one of our URLs (also with `view-source:` before it), or None."""
    url = url.strip()
    if url.startswith("view-source:"):
        url = url[len("view-source:"):]
    try:
        parsed = urlparse(url)
    except ValueError:
        return None
    if parsed.scheme != URL_SCHEME or parsed.netloc != URL_HOST:
        return None
    head = unquote(parsed.path).lstrip("/").split("/", 1)[0]
    return int(head) if head.isdigit() else None


def chunk_lines(text: str, chunk_chars: int = CHUNK_CHARS) -> list[tuple[int, str]]:
    """(first line, text) chunks of about `chunk_chars` characters, cut at line ends."""
    chunks: list[tuple[int, str]] = []
    start, size, lines = 0, 0, []
    for i, line in enumerate(text.split("\n")):
        while len(line) > chunk_chars:        # a very long line (minified code, a PDF without breaks)
            if lines:
                chunks.append((start, "\n".join(lines)))
                lines, size = [], 0
            chunks.append((i, line[:chunk_chars]))
            line = line[chunk_chars:]
        if not lines:
            start = i
        lines.append(line)
        size += len(line) + 1
        if size >= chunk_chars:
            chunks.append((start, "\n".join(lines)))
            lines, size = [], 0
    if lines and "\n".join(lines).strip():
        chunks.append((start, "\n".join(lines)))
    return [(s, t) for s, t in chunks if t.strip()]


_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(query: str) -> str | None:
    """An FTS5 query matching any word of `query` (each quoted: the user's text is never syntax)."""
    words = _WORD.findall(query.lower())
    if not words:
        return None
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


_WS = re.compile(r"\s+")


def collapse_whitespace(text: str) -> str:
    return _WS.sub(" ", text).strip()


class DocumentIndex:
    """The documents of one chat (`path` None: in memory). Safe to use from several threads."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(":memory:" if self.path is None else str(self.path),
                                     isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA busy_timeout = 5000")
        with self._lock:
            for statement in _SCHEMA:
                self._conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "DocumentIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- documents ----------------------------------------------------------------------------------

    def add(self, doc: ExtractedDocument, name: str | None = None, source: str | None = None) -> Document:
        """Index one extracted document; returns it with its id."""
        name = name or doc.path.name
        source = source or str(doc.path)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self._conn.execute(
                    "INSERT INTO documents (name, title, kind, source, text, page_starts, added_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, doc.title, doc.kind, source, doc.text, ",".join(map(str, doc.page_starts)), time.time()))
                doc_id = int(cur.lastrowid)
                self._conn.executemany(
                    "INSERT INTO chunks (doc_id, start_line, title, text) VALUES (?, ?, ?, ?)",
                    [(doc_id, start, doc.title, text) for start, text in chunk_lines(doc.text)])
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return Document(doc_id, name, doc.title, doc.kind, source, doc.text, tuple(doc.page_starts))

    def remove(self, doc_ids: Iterable[int]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for doc_id in doc_ids:
                    self._conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
                    self._conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @staticmethod
    def _document(row: sqlite3.Row) -> Document:
        starts = tuple(int(x) for x in row["page_starts"].split(",") if x)
        return Document(row["id"], row["name"], row["title"], row["kind"], row["source"], row["text"], starts)

    def get(self, doc_id: int) -> Document | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return None if row is None else self._document(row)

    def documents(self) -> list[Document]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM documents ORDER BY id").fetchall()
        return [self._document(r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM documents").fetchone()[0])

    # -- search -------------------------------------------------------------------------------------

    def search(self, query: str, limit: int = 20) -> list[SearchHit]:
        """The best-matching documents for `query` (any of its words), best first, one hit each.

        A document's score is the BM25 score of its best chunk plus TITLE_WEIGHT times that of its
        title and file name (scored once per document, so that short chunks do not win on the title).
        """
        match = fts_query(query)
        if match is None:
            return []
        with self._lock:
            rows = self._conn.execute(
                f"""SELECT c.doc_id, c.start_line, bm25(chunks_fts) AS score,
                        snippet(chunks_fts, 0, '', '', '…', {SNIPPET_TOKENS}) AS snip
                    FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid
                    WHERE chunks_fts MATCH ? ORDER BY score""",
                (match,),
            ).fetchall()
            title_rows = self._conn.execute(
                "SELECT rowid, bm25(titles_fts) AS score FROM titles_fts WHERE titles_fts MATCH ?", (match,)
            ).fetchall()
            best: dict[int, sqlite3.Row] = {}
            for r in rows:
                best.setdefault(r["doc_id"], r)
            title_score = {int(r["rowid"]): float(r["score"]) for r in title_rows}
            scored = []
            for doc_id in set(best) | set(title_score):
                text_score = float(best[doc_id]["score"]) if doc_id in best else 0.0
                scored.append((text_score + TITLE_WEIGHT * title_score.get(doc_id, 0.0), doc_id))
            scored.sort()
            hits: list[SearchHit] = []
            for score, doc_id in scored[:limit]:
                doc = self._conn.execute("SELECT name, title, text FROM documents WHERE id = ?", (doc_id,)).fetchone()
                if doc_id in best:
                    snippet, start = best[doc_id]["snip"], int(best[doc_id]["start_line"])
                else:
                    snippet, start = doc["text"][:300], 0
                hits.append(SearchHit(doc_id, doc["title"], document_url(doc_id, doc["name"]),
                                      collapse_whitespace(snippet), start, score))
        return hits
