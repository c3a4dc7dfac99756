"""Markdown -> HTML for Qt's rich-text engine, with highlighted code blocks that carry a copy link.

Qt-free. Uses the `markdown` package (fenced_code + codehilite/pygments, inline styles because
QTextDocument understands `style=` better than class selectors). Raw HTML in model output is
shown as text, never interpreted. Each code block becomes a one-cell table (Qt draws table
backgrounds reliably) headed by the language and a `copy-code:N` link; `Rendered.code_blocks[N]`
is the raw code that link copies.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache

import markdown

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


_CODEHILITE = re.compile(r'<div class="codehilite"[^>]*><pre[^>]*>(.*?)</pre></div>', re.S)
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)", re.M)
_TAGS = re.compile(r"<[^>]+>")


@lru_cache(maxsize=2)
def _converter(palette: Palette) -> markdown.Markdown:
    md = markdown.Markdown(
        extensions=["fenced_code", "codehilite", "tables", "sane_lists", "nl2br"],
        extension_configs={"codehilite": {"noclasses": True, "pygments_style": palette.pygments_style,
                                          "guess_lang": False, "use_pygments": True, "lang_prefix": "language-"}},
        output_format="html",
    )
    # Model output is text: never let it inject markup.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return md


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
def render_markdown(text: str, palette: Palette = LIGHT) -> Rendered:
    """Convert one message's Markdown; an unterminated ``` fence (mid-stream) renders as code."""
    if text.count("```") % 2 == 1:
        text = text + "\n```"
    md = _converter(palette)
    md.reset()
    body = md.convert(text)
    languages = [m.group(1) for m in _FENCE.finditer(text)][::2]  # opening fences only
    blocks: list[str] = []
    tables: list[str] = []

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1).replace("<span></span>", "").replace("\n</code>", "</code>")
        blocks.append(html.unescape(_TAGS.sub("", inner)).rstrip("\n"))
        n = len(blocks) - 1
        tables.append(_code_table(inner, n, palette, languages[n] if n < len(languages) else ""))
        return f"\x00{n}\x00"

    body = _CODEHILITE.sub(replace, body)
    body = body.replace("<code>", f'<code style="background-color:{palette.inline_code_bg};">')
    body = re.sub("\x00(\\d+)\x00", lambda m: tables[int(m.group(1))], body)
    style = f'<style>a {{ color: {palette.link}; }} p {{ margin-top: 4px; margin-bottom: 4px; }}</style>'
    return Rendered(style + body, tuple(blocks))


def render_plain(text: str, palette: Palette = LIGHT, *, muted: bool = True) -> str:
    """Text shown as typed (reasoning, the user's messages): escaped, line breaks kept; reasoning in the
    muted colour. Cheap enough to redo every 30 ms."""
    escaped = html.escape(text).replace("\n", "<br>")
    return f'<div style="color:{palette.muted};">{escaped}</div>' if muted else f"<div>{escaped}</div>"
