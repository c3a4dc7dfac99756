"""Turning what a user types into an FTS5 query, and FTS5 snippets into text + highlight spans."""

from __future__ import annotations

# Private-use characters mark matches inside snippet(); they are stripped before anything is shown.
SNIPPET_START = "\ue000"
SNIPPET_END = "\ue001"


def fts_query(text: str) -> str | None:
    """Every whitespace-separated word as a quoted prefix term, ANDed; None when nothing to search.

    Quoting makes FTS5 syntax in the input (quotes, AND, NEAR, ``*``, ``-``, ``:``) plain text, so
    no input can raise a syntax error.
    """
    words = [w.replace('"', '""') for w in text.split()]
    words = [w for w in words if any(ch.isalnum() for ch in w)]
    if not words:
        return None
    return " ".join(f'"{w}"*' for w in words)


def parse_snippet(raw: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Strip the markers; return the text and the [start, end) spans they enclosed."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    start: int | None = None
    for ch in raw:
        if ch == SNIPPET_START:
            start = length
        elif ch == SNIPPET_END:
            if start is not None:
                spans.append((start, length))
            start = None
        else:
            out.append(ch)
            length += 1
    return "".join(out), tuple(spans)
