"""Markdown -> HTML for Qt's rich-text engine, with highlighted code blocks that carry a copy link.

Qt-free. Uses the `markdown` package (fenced_code + codehilite/pygments, inline styles because
QTextDocument understands `style=` better than class selectors; tables, given borders here). Raw HTML
in model output is shown as text, never interpreted. Each code block becomes a one-cell table (Qt
draws table backgrounds reliably) headed by the language and a `copy-code:N` link;
`Rendered.code_blocks[N - first_code]` is the raw code that link copies.

Math (`$…$`, `\\(…\\)` inline; `$$…$$`, `\\[…\\]` display) is found by pymdown-extensions' arithmatex
(a kept Markdown extension; code blocks and inline code are left alone) and drawn as images by
ziamath on a background thread (app/math_images.py); until a formula is drawn, or if
ziamath cannot lay it out, its TeX source shows in code style (`Rendered.math_pending` says to render
again once `MATH.on_ready` fires).

A reply being streamed is rendered block by block (`split_blocks`): the finished blocks once each,
appended to the message, and only the open last block again on every update, so the cost of an
update does not grow with the length of the reply.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as etree
from dataclasses import dataclass
from functools import lru_cache

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

from app.math_images import MATH, Formula

COPY_SCHEME = "copy-code"


@dataclass(frozen=True)
class Palette:
    text: str
    muted: str
    code_bg: str
    code_border: str
    inline_code_bg: str
    link: str
    pygments_style: str


LIGHT = Palette("#1f2328", "#656d76", "#f6f8fa", "#d0d7de", "#eff1f3", "#0969da", "default")
DARK = Palette("#e6edf3", "#9198a1", "#161b22", "#30363d", "#2b3038", "#4493f8", "monokai")


@dataclass(frozen=True)
class Rendered:
    html: str
    code_blocks: tuple[str, ...]
    math_pending: bool = False    # some formula is still being drawn: render again when MATH is ready


_CODEHILITE = re.compile(r'<div class="codehilite"[^>]*><pre[^>]*>(.*?)</pre></div>', re.S)
_PLAIN_CODE = re.compile(r'<pre><code[^>]*>(.*?)</code></pre>', re.S)
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)", re.M)
_TAGS = re.compile(r"<[^>]+>")


class _TableStyle(Treeprocessor):
    """Tables get borders and padding (QTextDocument draws none for a bare <table>)."""

    def __init__(self, md: markdown.Markdown, palette: Palette) -> None:
        super().__init__(md)
        self.palette = palette

    def run(self, root: etree.Element) -> None:
        for table in root.iter("table"):
            table.set("border", "1")
            table.set("cellspacing", "0")
            table.set("cellpadding", "4")
            table.set("style", f"border-style: solid; border-color: {self.palette.muted}; margin: 4px 0px;")
        for cell in root.iter("th"):
            cell.set("style", f"background-color: {self.palette.code_bg};")


class _MathImages(Treeprocessor):
    """arithmatex's generic output (a span/div holding \\(…\\) or \\[…\\]) becomes an <img> of the formula,
    or its TeX in code style while it is drawn (or when it cannot be)."""

    def __init__(self, md: markdown.Markdown, palette: Palette) -> None:
        super().__init__(md)
        self.palette = palette
        self.pending = False

    def run(self, root: etree.Element) -> None:
        for parent in list(root.iter()):
            for i, el in enumerate(list(parent)):
                if el.get("class") != "arithmatex":
                    continue
                display = el.tag == "div"
                raw = html.unescape(el.text or "")
                tex = raw[2:-2].strip() if raw[:2] in ("\\(", "\\[") else raw.strip()
                known, url = MATH.lookup(Formula(tex, display, self.palette.text))
                self.pending = self.pending or not known
                if url is not None:
                    new = etree.Element("img", {"src": url, "alt": tex, "style": "vertical-align: middle;"})
                else:
                    new = etree.Element("code", {"style": f"background-color:{self.palette.inline_code_bg};"})
                    new.text = markdown.util.AtomicString(tex)
                if display:   # a centred one-cell table: a paragraph's alignment is lost when a block is appended
                    holder = etree.Element("table", {"width": "100%", "cellspacing": "0", "cellpadding": "4"})
                    cell = etree.SubElement(etree.SubElement(holder, "tr"), "td", {"align": "center"})
                    cell.append(new)
                    new = holder
                new.tail = el.tail
                parent.remove(el)
                parent.insert(i, new)


class _TableStyleExtension(Extension):
    def __init__(self, palette: Palette) -> None:
        super().__init__()
        self.palette = palette

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 - markdown's API
        md.treeprocessors.register(_TableStyle(md, self.palette), "lantern_tables", 5)
        self.math = _MathImages(md, self.palette)
        md.treeprocessors.register(self.math, "lantern_math", 4)


@lru_cache(maxsize=4)
def _converter(palette: Palette, highlight: bool = True) -> tuple[markdown.Markdown, _TableStyleExtension]:
    ours = _TableStyleExtension(palette)
    md = markdown.Markdown(
        extensions=["fenced_code", "codehilite", "tables", "sane_lists", "nl2br", "pymdownx.arithmatex", ours],
        extension_configs={"codehilite": {"noclasses": True, "pygments_style": palette.pygments_style,
                                          "guess_lang": False, "use_pygments": highlight,
                                          "lang_prefix": "language-"},
                           "pymdownx.arithmatex": {"generic": True, "smart_dollar": True}},
        output_format="html",
    )
    # Model output is text: never let it inject markup.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return md, ours


def _code_table(inner: str, index: int, palette: Palette, language: str) -> str:
    label = html.escape(language or "code")
    return (
        f'<table width="100%" cellspacing="0" cellpadding="6" style="background-color:{palette.code_bg}; '
        f'border: 1px solid {palette.code_border}; border-collapse: collapse; margin: 4px 0px;">'
        f'<tr><td style="background-color:{palette.code_border}; padding: 2px 6px;"><span style="color:{palette.muted}; font-size:small;">{label}</span>'
        f'&nbsp;&nbsp;<a href="{COPY_SCHEME}:{index}" style="color:{palette.link}; font-size:small; '
        f'text-decoration:none;">Copy</a></td></tr>'
        f'<tr><td><pre style="white-space: pre-wrap; margin:0px;">{inner}</pre></td></tr></table>'
    )


@lru_cache(maxsize=256)
def render_markdown(text: str, palette: Palette = LIGHT, *, highlight: bool = True, first_code: int = 0) -> Rendered:
    """Convert one message's (or one block's) Markdown; an unterminated ``` fence (mid-stream) renders
    as code. `highlight` False skips pygments (a code block still being written); `first_code` numbers
    this text's code blocks after those of the blocks before it."""
    if text.count("```") % 2 == 1:
        text = text + "\n```"
    md, ours = _converter(palette, highlight)
    md.reset()
    ours.math.pending = False
    body = md.convert(text)
    languages = [m.group(1) for m in _FENCE.finditer(text)][::2]  # opening fences only
    blocks: list[str] = []
    tables: list[str] = []

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1).replace("<span></span>", "").replace("\n</code>", "</code>")
        blocks.append(html.unescape(_TAGS.sub("", inner)).rstrip("\n"))
        n = len(blocks) - 1
        tables.append(_code_table(inner, first_code + n, palette, languages[n] if n < len(languages) else ""))
        return f"\x00{n}\x00"

    body = _CODEHILITE.sub(replace, body) if highlight else _PLAIN_CODE.sub(replace, body)
    body = body.replace("<code>", f'<code style="background-color:{palette.inline_code_bg};">')
    body = re.sub("\x00(\\d+)\x00", lambda m: tables[int(m.group(1))], body)
    style = f'<style>a {{ color: {palette.link}; }} p {{ margin-top: 4px; margin-bottom: 4px; }}</style>'
    return Rendered(style + body, tuple(blocks), ours.math.pending)


def render_plain(text: str, palette: Palette = LIGHT, *, muted: bool = True) -> str:
    """Text shown as typed (reasoning, the user's messages): escaped, line breaks kept; reasoning in the
    muted colour. Cheap enough to redo every 30 ms."""
    escaped = html.escape(text).replace("\n", "<br>")
    return f'<div style="color:{palette.muted};">{escaped}</div>' if muted else f"<div>{escaped}</div>"


_FENCE_LINE = re.compile(r"^[ \t]{0,3}(```|~~~)")
_CONTINUES = re.compile(r"^([ \t]|[-*+][ \t]|\d+[.)][ \t])")
"""A line that continues the block before a blank line: indented, or a list item (a loose list)."""


STREAM_TAIL_CHARS = 1200
"""While streaming, an open block longer than this is cut at its last line end (outside a code fence),
so no single re-render grows with a long paragraph; text with no line end is cut at a space past
4x this. The finished reply keeps those cuts (a new paragraph where a line ended)."""


def split_blocks(text: str, *, streaming: bool = False) -> tuple[list[str], str]:
    """(finished blocks, the open last one): a block ends at a blank line outside a code fence that
    is followed by a line starting a new block (not an indented line or a list item). `streaming`:
    also cut an open block longer than STREAM_TAIL_CHARS (see there)."""
    blocks, tail = _split_at_blank_lines(text)
    if not streaming or len(tail) <= STREAM_TAIL_CHARS:
        return blocks, tail
    # Greedy chunks from the start of the open block: a cut depends only on the text before it, so it
    # stays where it is as the text grows (the chunks before it are appended once).
    start, size, fence = 0, 0, None
    pieces = tail.split("\n")
    offset = 0
    for i, line in enumerate(pieces[:-1]):          # the last line may still grow
        m = _FENCE_LINE.match(line)
        if m:
            fence = None if fence == m.group(1) else (fence or m.group(1))
        offset += len(line) + 1
        size += len(line) + 1
        if fence is None and size >= STREAM_TAIL_CHARS and line.strip():
            blocks.append(tail[start:offset - 1])
            start, size = offset, 0
    rest = tail[start:]
    while len(rest) > 4 * STREAM_TAIL_CHARS and "\n" not in rest and fence is None:   # no line ends at all
        cut = rest.find(" ", 4 * STREAM_TAIL_CHARS)
        if cut <= 0 or cut == len(rest) - 1:
            break
        blocks.append(rest[:cut])
        rest = rest[cut + 1:]
    return blocks, rest


def _split_at_blank_lines(text: str) -> tuple[list[str], str]:
    lines = text.split("\n")
    blocks: list[str] = []
    start = 0
    fence: str | None = None
    for i, line in enumerate(lines):
        m = _FENCE_LINE.match(line)
        if m:
            fence = None if fence == m.group(1) else (fence or m.group(1))
            continue
        if fence is None and line.strip() == "" and i + 1 < len(lines):
            nxt = lines[i + 1]
            if nxt.strip() and not _CONTINUES.match(nxt) and i + 1 < len(lines) - 1:
                chunk = "\n".join(lines[start:i]).strip("\n")
                if chunk.strip():
                    blocks.append(chunk)
                start = i + 1
    return blocks, "\n".join(lines[start:])


WARM_LANGUAGES = ("python", "javascript", "typescript", "bash", "json", "c", "cpp", "rust", "go", "java", "html",
                  "css", "sql", "yaml", "text")


def warm_up(languages: tuple[str, ...] = WARM_LANGUAGES) -> None:
    """Build pygments' lexers for common languages (their regexes take up to ~0.2 s each to compile the
    first time a code block in that language is shown). Safe on any thread: it shares nothing with
    `render_markdown`'s converters; the app runs it on a pool thread at start."""
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    # A throwaway converter (never the cached ones the GUI thread uses): imports every extension module.
    markdown.Markdown(extensions=["fenced_code", "codehilite", "tables", "sane_lists", "nl2br",
                                  "pymdownx.arithmatex"]).convert("```python\nx = 1\n```\n\n| a |\n|---|\n| 1 |")
    for name in languages:
        try:
            lexer = get_lexer_by_name(name)
            list(lexer.get_tokens("x = 1\n"))
        except ClassNotFound:
            continue
