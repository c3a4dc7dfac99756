"""Conversation titles made from the first user message."""

from __future__ import annotations

TITLE_LIMIT = 60


def make_title(text: str, limit: int = TITLE_LIMIT) -> str | None:
    """Whitespace collapsed, cut at a word boundary to at most ``limit`` characters plus "…".

    None when the text is blank.
    """
    words = " ".join(text.split())
    if not words:
        return None
    if len(words) <= limit:
        return words
    cut = words[:limit]
    space = cut.rfind(" ")
    if space >= limit // 2:  # a word boundary not too far back; otherwise cut mid-word
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"
