"""The `browser` tool over a chat's own documents: `search`, `open`, `find`, and nothing online.

The pages the model sees follow OpenAI's reference browser exactly (docs/tools.md "Browser";
tests/tools/test_browser_reference.py runs that reference on the same documents and compares
every byte):

    [{cursor}] {title} ({url})
    **viewing lines [{loc} - {end}] of {last}**

    L{loc}: {line}
    ...

Page text is wrapped at 80 columns; every search, open, scroll and find pushes a page, and its
index in that stack is the cursor the model cites as `【{cursor}†L{a}-L{b}】`. A search page
lists hits as `  * 【{i}†{title}†docs.local】 {snippet}`; `open {"id": i}` follows one. A URL that is not
one of the chat's documents is answered "not available offline": nothing here opens a socket.

`LocalBrowser.call(function, arguments_json)` returns the tool's reply text; `pages()` describes
the cursor stack so that citations in the answer can be turned into document lines later
(`resolve_citation`).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlparse

from engine.tools.index import URL_HOST, DocumentIndex, collapse_whitespace, parse_document_url

log = logging.getLogger(__name__)

VIEW_TOKENS = 1024              # a page shows about this many tokens when num_lines is not given
MAX_SEARCH_RESULTS = 20         # what the reference asks its backend for, whatever `topn` says
WRAP_WIDTH = 80
FIND_MAX_RESULTS = 50
FIND_SHOW_LINES = 4
VIEW_SOURCE_PREFIX = "view-source:"
OFFLINE_MESSAGE = ("not available offline: this browser reads only the documents attached to this chat "
                   "(search them, then open a result)")

_SPECIAL = {"【": "〖", "】": "〗", "◼": "◾", "\u200b": ""}
_SPECIAL_RE = re.compile("|".join(map(re.escape, _SPECIAL)))
_PARTIAL_INITIAL_LINK = re.compile(r"^[^【】]*】")
_PARTIAL_FINAL_LINK = re.compile(r"【\d*(?:†(?P<content>[^†】]*)(?:†[^†】]*)?)?$")
_LINK = re.compile(r"【\d+†(?P<content>[^†】]+)(?:†[^†】]+)?】")
CITATION_RE = re.compile(r"【(?P<cursor>\d+)†L(?P<start>\d+)(?:-L(?P<end>\d+))?】")


class ToolUsageError(Exception):
    """The model used the browser wrongly; the message goes back to it as the tool's reply."""


def replace_special_chars(text: str) -> str:
    """Characters that would read as link markers become look-alikes (as the reference does)."""
    return _SPECIAL_RE.sub(lambda m: _SPECIAL[m.group(0)], text)


def maybe_truncate(text: str, num_chars: int = 1024) -> str:
    return text[: num_chars - 3] + "..." if len(text) > num_chars else text


def wrap_lines(text: str, width: int = WRAP_WIDTH) -> list[str]:
    """Page lines: each text line wrapped at `width` code points, spaces kept, empty lines kept."""
    return [piece for line in text.split("\n") for piece in _wrap_one(line, width)]


def _wrap_one(line: str, width: int) -> list[str]:
    if not line:
        return [""]
    return textwrap.wrap(line, width=width, replace_whitespace=False, drop_whitespace=False)


def wrapped_line_origins(text: str, width: int = WRAP_WIDTH) -> list[int]:
    """For each page line of `wrap_lines(text)`, the index of the text line it comes from."""
    return [i for i, line in enumerate(text.split("\n")) for _ in _wrap_one(line, width)]


def join_lines(lines: Sequence[str], add_line_numbers: bool = False, offset: int = 0) -> str:
    if add_line_numbers:
        return "\n".join(f"L{i + offset}: {line}" for i, line in enumerate(lines))
    return "\n".join(lines)


def strip_links(text: str) -> str:
    text = _PARTIAL_INITIAL_LINK.sub("", text)
    text = _PARTIAL_FINAL_LINK.sub(lambda m: m.group("content") or "", text)
    return _LINK.sub(lambda m: m.group("content"), text)


# --- how much of a page fits in the view -------------------------------------------------------------


class TokenLengths:
    """Character offsets of tokens the way the reference counts them (o200k_base, each token decoded alone)."""

    def __init__(self, encode: Callable[[str], list[int]], token_bytes: Callable[[int], bytes],
                 vocab_ids: Sequence[int], special_names: Sequence[str]) -> None:
        self._encode = encode
        self._token_bytes = token_bytes
        self._vocab_ids = vocab_ids
        self._special_names = special_names

    @functools.lru_cache(maxsize=None)  # noqa: B019 - one instance per process
    def length(self, token_id: int) -> int:
        return len(self._token_bytes(token_id).decode("utf-8", errors="replace"))

    @functools.cached_property
    def max_chars_per_token(self) -> int:
        longest = max(len(self._token_bytes(i).decode("utf-8", errors="replace")) for i in self._vocab_ids)
        return max([longest, *map(len, self._special_names)])

    def offsets(self, text: str) -> list[int]:
        """The character offset where each token of `text` starts (a running sum of decoded lengths)."""
        tokens = self._encode(text)
        return [0, *itertools.accumulate(self.length(t) for t in tokens)][: len(tokens)]


@functools.lru_cache(maxsize=1)
def default_token_lengths() -> TokenLengths:
    """From the tokenizer bundled with Lantern (its ordinary tokens are o200k_base's)."""
    from engine.tokenizer import NUM_BPE_TOKENS, load_tokenizer

    tok = load_tokenizer()
    return TokenLengths(tok.encode, tok.token_bytes, range(NUM_BPE_TOKENS), ("<|endoftext|>", "<|endofprompt|>"))


def end_location(loc: int, num_lines: int, lines: Sequence[str], view_tokens: int, tokens: TokenLengths) -> int:
    """One past the last line shown: `num_lines` lines, or (num_lines <= 0) about `view_tokens` tokens."""
    total = len(lines)
    if num_lines <= 0:
        text = join_lines(lines[loc:], add_line_numbers=True, offset=loc)
        num_lines = total
        if len(text) > view_tokens:     # at least one character per token: short texts fit whole
            offsets = tokens.offsets(text[: (view_tokens + 1) * tokens.max_chars_per_token])
            if len(offsets) > view_tokens:
                num_lines = text[: offsets[view_tokens]].count("\n") + 1   # rounded up to a whole line
    return min(loc + num_lines, total)


# --- pages ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extract:
    """Where a find result points: `line_idx` in the page at `url`."""

    url: str
    text: str
    title: str
    line_idx: int | None = None


@dataclass(frozen=True)
class Page:
    url: str
    title: str
    text: str
    urls: dict[str, str]
    snippets: dict[str, Extract] | None = None
    kind: str = "document"                  # "search" | "document" | "find"
    doc_id: int | None = None               # the document shown (document and find pages)
    line_docs: tuple[int | None, ...] = ()  # search pages: the document each page line is about
    line_sources: tuple[int, ...] = ()      # find pages: the document page line each line shows (-1: none)


def search_page(query: str, hits: Sequence[tuple[str, str, str]]) -> Page:
    """The results page for (title, url, snippet) hits, as the reference renders its search HTML.

    Its text: `\\nURL: \\n# Search Results\\n\\n` then one `  * 【i†title†domain】 snippet` per hit.
    """
    lines = ["", "URL: ", "# Search Results"]
    urls: dict[str, str] = {}
    for i, (title, url, snippet) in enumerate(hits):
        title_text = collapse_whitespace(replace_special_chars(title)).replace("†", "‡")
        summary = collapse_whitespace(replace_special_chars(snippet))
        domain = urlparse(url).netloc
        urls[str(i)] = url
        lines.append(f"  * 【{i}†{title_text}†{domain}】" + (f" {summary}" if summary else ""))
    if hits:
        lines.insert(3, "")
    text = "\n".join(lines)
    line_docs: list[int | None] = []
    for line_no, line in enumerate(text.split("\n")):
        doc = None
        if line.startswith("  * 【"):
            k = line_no - 4
            doc = parse_document_url(urls.get(str(k), "")) if 0 <= k < len(hits) else None
        line_docs += [doc] * len(_wrap_one(line, WRAP_WIDTH))
    return Page(url="", title=query, text=text, urls=urls, kind="search", line_docs=tuple(line_docs))


def document_page(doc_id: int, url: str, title: str, body: str) -> Page:
    return Page(url=url, title=title, text=f"\nURL: {url}\n" + replace_special_chars(body), urls={}, kind="document",
                doc_id=doc_id)


def find_page(pattern: str, page: Page) -> Page:
    """Matches of `pattern` (lower-cased) in `page`: 4 lines each, at most 50, line numbers kept."""
    lines = strip_links(join_lines(wrap_lines(page.text))).split("\n")
    chunks: list[str] = []
    snippets: list[Extract] = []
    sources: list[int] = []
    line_idx = 0
    while line_idx < len(lines):
        if pattern not in lines[line_idx].lower():
            line_idx += 1
            continue
        shown = lines[line_idx: line_idx + FIND_SHOW_LINES]
        chunks.append(f"# 【{len(chunks)}†match at L{line_idx}】\n" + "\n".join(shown))
        sources += ([-1] if not sources else [-1, -1]) + list(range(line_idx, line_idx + len(shown)))
        snippets.append(Extract(url=page.url, text="\n".join(shown), title=f"#{len(snippets)}", line_idx=line_idx))
        if len(chunks) == FIND_MAX_RESULTS:
            break
        line_idx += FIND_SHOW_LINES
    text = "\n\n".join(chunks) if chunks else f"No `find` results for pattern: `{pattern}`"
    return Page(
        url=f"{page.url}/find?pattern={quote(pattern)}",
        title=f"Find results for text: `{pattern}` in `{page.title}`",
        text=text,
        urls={str(i): page.url for i in range(len(chunks))},
        snippets={str(i): s for i, s in enumerate(snippets)},
        kind="find", doc_id=page.doc_id, line_sources=tuple(sources),
    )


# --- the tool -------------------------------------------------------------------------------------

_OPEN_KEYS = ("id", "cursor", "loc", "num_lines", "view_source", "source")


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ToolUsageError(f"`{name}` should be an integer, not `bool`")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ToolUsageError(f"`{name}` should be an integer, not `{type(value).__name__}`")


@dataclass
class BrowserState:
    pages: dict[str, Page] = field(default_factory=dict)
    page_stack: list[str] = field(default_factory=list)

    @property
    def current_cursor(self) -> int:
        return len(self.page_stack) - 1

    def add_page(self, page: Page) -> None:
        self.pages[page.url] = page
        self.page_stack.append(page.url)

    def get_page(self, cursor: int = -1) -> Page:
        if self.current_cursor < 0:
            raise ToolUsageError("No pages to access!")
        if cursor == -1 or cursor == self.current_cursor:
            return self.pages[self.page_stack[-1]]
        if not 0 <= cursor <= self.current_cursor:
            raise ToolUsageError(f"Cursor `{cursor}` is out of range. "
                                 f"Available cursor indices: [0 - {self.current_cursor}].")
        return self.pages[self.page_stack[cursor]]


class LocalBrowser:
    """One browsing session (the reference makes one per request; Lantern one per reply)."""

    def __init__(self, index: DocumentIndex, *, view_tokens: int = VIEW_TOKENS,
                 max_search_results: int = MAX_SEARCH_RESULTS, tokens: TokenLengths | None = None) -> None:
        self.index = index
        self.view_tokens = view_tokens
        self.max_search_results = max_search_results
        self._tokens = tokens
        self.state = BrowserState()
        self.cursor_pages: list[Page] = []     # the page each cursor showed (a later fetch cannot change it)

    @property
    def tokens(self) -> TokenLengths:
        if self._tokens is None:
            self._tokens = default_token_lengths()
        return self._tokens

    # -- entry point --------------------------------------------------------------------------------

    def call(self, function: str, arguments: str) -> str:
        """The reply to `browser.{function}` with `arguments` (the JSON text the model wrote)."""
        args: Any = {}
        if arguments.strip():
            try:
                args = json.loads(arguments)
            except json.JSONDecodeError:
                args = None
        if not isinstance(args, dict):
            return json.dumps({"error": "Invalid function arguments"})
        try:
            if function == "search":
                if "query" not in args:
                    raise ToolUsageError("`search` needs a `query`.")
                return self.search(str(args["query"]))
            if function == "open":
                return self.open(**{k: args[k] for k in _OPEN_KEYS if k in args})
            if function == "find":
                if "pattern" not in args:
                    raise ToolUsageError("`find` needs a `pattern`.")
                return self.find(str(args["pattern"]), _as_int(args.get("cursor", -1), "cursor"))
        except ToolUsageError as exc:
            return str(exc)
        return json.dumps({"error": f"Unknown function: {function}"})

    # -- functions ----------------------------------------------------------------------------------

    def search(self, query: str) -> str:
        hits = self.index.search(query, limit=self.max_search_results)
        self.state.add_page(search_page(query, [(h.title, h.url, h.snippet) for h in hits]))
        return self._show_safely(0, -1)

    def open(self, id: Any = -1, cursor: Any = -1, loc: Any = -1, num_lines: Any = -1,  # noqa: A002 - the tool's name
             view_source: Any = False, source: Any = None) -> str:
        del source
        if isinstance(id, str) and id.strip().isdigit() and parse_document_url(id) is None:
            id = int(id.strip())     # the model wrote a link id as text
        cursor, loc, num_lines = _as_int(cursor, "cursor"), _as_int(loc, "loc"), _as_int(num_lines, "num_lines")
        snippet: Extract | None = None
        stay = False
        direct = False
        current: Page | None = None
        if isinstance(id, str):
            url, direct = id, True
        else:
            link = _as_int(id, "id")
            current = self.state.get_page(cursor)
            if link >= 0:
                if str(link) not in current.urls:
                    raise ToolUsageError(f"Invalid link id `{link}`.")
                url = current.urls[str(link)]
                snippet = (current.snippets or {}).get(str(link))
            else:
                stay = not view_source
                url = current.url
        if view_source:
            url, snippet = f"{VIEW_SOURCE_PREFIX}{url}", None
        if stay:
            assert current is not None
            page = current
        else:
            page = self._fetch(url, cached=not direct)
        self.state.add_page(page)
        if loc < 0:
            loc = 0
            if snippet is not None and snippet.line_idx is not None:
                loc = snippet.line_idx - 4 if snippet.line_idx > 4 else snippet.line_idx
        return self._show_safely(loc, num_lines)

    def find(self, pattern: str, cursor: int = -1) -> str:
        page = self.state.get_page(cursor)
        if page.snippets is not None:
            raise ToolUsageError("Cannot run `find` on search results page or find results page")
        self.state.add_page(find_page(pattern.lower(), page))
        return self._show_safely(0, -1)

    # -- helpers ------------------------------------------------------------------------------------

    def _fetch(self, url: str, *, cached: bool) -> Page:
        if cached and url in self.state.pages:
            return self.state.pages[url]
        doc_id = parse_document_url(url)
        doc = self.index.get(doc_id) if doc_id is not None else None
        if doc is None:
            log.info("browser: %s is not one of the chat's documents", url)
            raise ToolUsageError(f"Error fetching URL `{maybe_truncate(url)}`: {OFFLINE_MESSAGE}")
        page = document_page(doc.id, doc.url, doc.title, doc.text)
        if url.startswith(VIEW_SOURCE_PREFIX):      # the same text, under the URL that was asked for
            page = Page(url, page.title, page.text, {}, None, "document", doc.id)
        return page

    def _show_safely(self, loc: int, num_lines: int) -> str:
        try:
            return self._show(loc, num_lines)
        except ToolUsageError:
            self.state.page_stack.pop()
            raise

    def _show(self, loc: int, num_lines: int) -> str:
        page = self.state.get_page()
        cursor = self.state.current_cursor
        lines = wrap_lines(page.text)
        total = len(lines)
        if loc >= total:
            raise ToolUsageError(f"Invalid location parameter: `{loc}`. Cannot exceed page maximum of {total - 1}.")
        end = end_location(loc, num_lines, lines, self.view_tokens, self.tokens)
        body = join_lines(lines[loc:end], add_line_numbers=True, offset=loc)
        header = page.title
        shown_url = maybe_truncate(unquote(page.url))
        if shown_url:
            header += f" ({shown_url})"
        header += f"\n**viewing lines [{loc} - {end - 1}] of {total - 1}**\n\n"
        del self.cursor_pages[cursor:]
        self.cursor_pages.append(page)
        return f"[{cursor}] {header}{body}"

    # -- citations ----------------------------------------------------------------------------------

    def pages(self) -> list[dict[str, Any]]:
        """What each cursor showed, compactly (stored with the reply to resolve its citations)."""
        out: list[dict[str, Any]] = []
        for page in self.cursor_pages:
            entry: dict[str, Any] = {"kind": page.kind, "title": page.title, "url": page.url}
            if page.doc_id is not None:
                entry["doc"] = page.doc_id
            if page.kind == "search":
                entry["line_docs"] = list(page.line_docs)
            elif page.kind == "find":
                entry["line_sources"] = list(page.line_sources)
            out.append(entry)
        return out


@dataclass(frozen=True)
class CitationTarget:
    doc_id: int
    first_line: int      # lines of the document's extracted text (0-based), inclusive
    last_line: int


def document_line_range(page_text: str, start: int, end: int) -> tuple[int, int]:
    """Document text lines shown on page lines [start, end] of a document page (its 2 header lines skipped)."""
    origins = wrapped_line_origins(page_text)
    if not origins:
        return 0, 0
    clamp = lambda n: origins[max(0, min(n, len(origins) - 1))]  # noqa: E731
    return max(0, clamp(start) - 2), max(0, clamp(end) - 2)


def resolve_citation(pages: Sequence[dict[str, Any]], cursor: int, start: int, end: int,
                     document_text: Callable[[int], str | None]) -> CitationTarget | None:
    """The document and lines a citation `【cursor†Lstart-Lend】` points at, or None if it points nowhere."""
    if not 0 <= cursor < len(pages):
        return None
    page = pages[cursor]
    end = max(start, end)
    kind = page.get("kind")
    if kind == "search":
        docs = [d for d in page.get("line_docs", [])[start:end + 1] if d is not None]
        return CitationTarget(int(docs[0]), 0, 0) if docs else None
    doc_id = page.get("doc")
    if doc_id is None:
        return None
    text = document_text(int(doc_id))
    if text is None:
        return None
    page_text = f"\nURL: {page.get('url', '')}\n" + replace_special_chars(text)
    if kind == "find":
        sources = [s for s in page.get("line_sources", [])[start:end + 1] if isinstance(s, int) and s >= 0]
        if not sources:
            return None
        start, end = min(sources), max(sources)
        base = page.get("url", "").split("/find?pattern=", 1)[0]
        page_text = f"\nURL: {base}\n" + replace_special_chars(text)
    first, last = document_line_range(page_text, start, end)
    return CitationTarget(int(doc_id), first, last)


def citations(text: str) -> list[tuple[int, int, int, int, int]]:
    """(start, end offsets in `text`, cursor, first line, last line) of each `【c†La-Lb】` in `text`."""
    out = []
    for m in CITATION_RE.finditer(text):
        a = int(m.group("start"))
        b = int(m.group("end")) if m.group("end") else a
        out.append((m.start(), m.end(), int(m.group("cursor")), a, b))
    return out


__all__ = ["LocalBrowser", "Page", "ToolUsageError", "URL_HOST", "citations", "resolve_citation", "wrap_lines"]
