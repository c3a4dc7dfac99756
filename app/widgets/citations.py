"""Citations the model writes (`【3†L9-L11】`, the browser tool's format) as links in the rendered answer.

`link_citations(text)` turns each into a Markdown link shown as `[L9–L11]` (`cite:3/9/11`; the
stored answer keeps the model's text); the message widget sends a click on one as
`citation_clicked(message id, cursor, first line, last line)`.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QUrl

CITE_SCHEME = "cite"
_CITATION = re.compile(r"【(\d+)†L(\d+)(?:-L(\d+))?】")
_FENCE = re.compile(r"```.*?(```|$)", re.S)


def link_citations(text: str) -> str:
    """Citations outside code blocks become links (the text shown stays the same)."""
    if "【" not in text:
        return text
    out, last = [], 0
    for fence in _FENCE.finditer(text):
        out.append(_link(text[last:fence.start()]))
        out.append(fence.group(0))
        last = fence.end()
    out.append(_link(text[last:]))
    return "".join(out)


def _link(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        end = m.group(3) or m.group(2)
        label = f"L{m.group(2)}" + (f"–L{end}" if end != m.group(2) else "")
        return f"[\\[{label}\\]]({CITE_SCHEME}:{m.group(1)}/{m.group(2)}/{end})"
    return _CITATION.sub(repl, text)


def parse_citation_url(url: QUrl) -> tuple[int, int, int] | None:
    """(cursor, first line, last line) of a `cite:` link."""
    if url.scheme() != CITE_SCHEME:
        return None
    parts = url.path().split("/")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])
