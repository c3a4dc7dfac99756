"""Text out of the user's documents, by kept libraries (docs/tools.md "Documents").

* plain text, Markdown, code and other text files: decoded (UTF-8, UTF-16 with a BOM, else
  Latin-1), kept as they are;
* PDF: `pypdf`, page by page (pages separated by a blank line; `page_starts` gives each page's
  first line);
* HTML: `beautifulsoup4` drops scripts and styles, `markdownify` turns the rest into Markdown
  (headings as `#`, lists as `*`), links and images as their text;
* DOCX: `python-docx`, paragraphs (headings as `#`) and tables (cells joined by ` | `).

`extract_document(path)` returns an `ExtractedDocument`; anything it cannot read raises
`ExtractionError` with a message fit for the user. `iter_folder(path)` lists the files of a
folder that can be read, skipping hidden folders and build output.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 64 * 2**20        # bigger files are refused (a 64 MiB PDF is already a book)
MAX_TEXT_CHARS = 8_000_000         # extracted text beyond this is cut (with a note)
MAX_FOLDER_FILES = 2000

TEXT_EXTENSIONS = frozenset("""
.txt .text .md .markdown .mdown .rst .adoc .org .tex .csv .tsv .json .jsonl .yaml .yml .toml .ini .cfg .conf
.log .xml .svg .srt .vtt .env .properties .gitignore .dockerfile .makefile .mk .cmake .gradle .bib
.py .pyi .ipynb .js .mjs .cjs .jsx .ts .tsx .c .h .cc .cpp .cxx .hpp .hh .m .mm .rs .go .java .kt .kts .scala
.swift .cs .fs .vb .rb .php .pl .pm .lua .r .jl .hs .ml .mli .ex .exs .erl .clj .dart .zig .nim .sh .bash
.zsh .fish .ps1 .bat .cmd .sql .graphql .proto .css .scss .sass .less .vue .svelte
""".split())
PLAIN_TEXT_EXTENSIONS = frozenset({".txt", ".text", ".rst", ".adoc", ".org", ".csv", ".tsv", ".log", ".srt", ".vtt"})
MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown", ".mdown"})
HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
PDF_EXTENSIONS = frozenset({".pdf"})
DOCX_EXTENSIONS = frozenset({".docx"})
SKIPPED_FOLDERS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox",
                             ".mypy_cache", ".pytest_cache", "build", "dist", "target", ".idea", ".vscode"})


class ExtractionError(Exception):
    """A document could not be read; the message says why, for the user."""


@dataclass(frozen=True)
class ExtractedDocument:
    path: Path
    title: str
    kind: str                      # "text" | "markdown" | "code" | "pdf" | "html" | "docx"
    text: str
    page_starts: tuple[int, ...] = field(default=())   # PDF: the text line where each page begins
    note: str | None = None        # e.g. "cut at 8,000,000 characters"

    @property
    def line_count(self) -> int:
        return self.text.count("\n") + 1


def kind_of(path: Path) -> str | None:
    """The kind of document a file name says it is, or None when the extension is unknown."""
    ext = path.suffix.lower()
    if ext in PDF_EXTENSIONS:
        return "pdf"
    if ext in HTML_EXTENSIONS:
        return "html"
    if ext in DOCX_EXTENSIONS:
        return "docx"
    if ext in MARKDOWN_EXTENSIONS:
        return "markdown"
    if ext in PLAIN_TEXT_EXTENSIONS or path.name.lower() in ("readme", "license", "copying", "notice"):
        return "text"
    if ext in TEXT_EXTENSIONS or path.name.lower() in ("makefile", "dockerfile"):
        return "code"
    return None


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def looks_binary(data: bytes) -> bool:
    """NUL bytes in the first 8 KiB (and no UTF-16 BOM): not a text file."""
    head = data[:8192]
    return b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff"))


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return text


_BLANK_RUNS = re.compile(r"\n[ \t]*(\n[ \t]*)+\n")


def _squeeze_blank_lines(text: str) -> str:
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


def _read_text(path: Path, data: bytes, kind: str) -> ExtractedDocument:
    if looks_binary(data):
        raise ExtractionError(f"{path.name} is not a text file.")
    return ExtractedDocument(path, path.name, kind, _normalise(_decode(data)))


def _read_pdf(path: Path) -> ExtractedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError(f"{path.name} is password-protected; open it elsewhere and save an unprotected copy.")
        parts: list[str] = []
        starts: list[int] = []
        line = 0
        for page in reader.pages:
            text = _squeeze_blank_lines(_normalise(page.extract_text() or ""))
            starts.append(line)
            parts.append(text)
            line += text.count("\n") + 2      # the page's lines plus the blank line after it
        title = None
        try:
            meta = reader.metadata
            title = (meta.title or "").strip() if meta is not None else None
        except Exception:  # noqa: BLE001 - broken metadata: the file name will do
            title = None
    except ExtractionError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ExtractionError(f"{path.name} could not be read as a PDF ({exc}).") from exc
    text = "\n\n".join(parts)
    if not text.strip():
        raise ExtractionError(f"{path.name} has no text layer (a scanned PDF?); Lantern does not read images.")
    return ExtractedDocument(path, title or path.name, "pdf", text, tuple(starts))


def html_to_markdown(html: str) -> tuple[str | None, str]:
    """(the <title>, the page as Markdown text) of an HTML document."""
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
    from markdownify import markdownify

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(html, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag is not None else None
    for tag in soup(["script", "style", "noscript", "template", "head", "svg", "math"]):
        tag.decompose()
    body = soup.body or soup
    text = markdownify(str(body), heading_style="ATX", bullets="*", strip=["a", "img"], escape_asterisks=False,
                       escape_underscores=False, escape_misc=False)
    lines = [line.rstrip() for line in _normalise(text).split("\n")]
    return (title or None), _squeeze_blank_lines("\n".join(lines))


def _read_html(path: Path, data: bytes) -> ExtractedDocument:
    title, text = html_to_markdown(_decode(data))
    return ExtractedDocument(path, title or path.name, "html", text)


def _read_docx(path: Path) -> ExtractedDocument:
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(str(path))
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise ExtractionError(f"{path.name} could not be read as a Word document ({exc}).") from exc
    lines: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            style = (block.style.name if block.style is not None else "") or ""
            if text and style.startswith("Heading"):
                level = style.removeprefix("Heading").strip()
                text = "#" * (int(level) if level.isdigit() else 1) + " " + text
            elif text and style == "Title":
                text = "# " + text
            elif text and "List" in style:
                text = "* " + text
            lines.append(text)
        elif isinstance(block, Table):
            for row in block.rows:
                lines.append(" | ".join(cell.text.strip().replace("\n", " ") for cell in row.cells))
            lines.append("")
    title = (document.core_properties.title or "").strip()
    return ExtractedDocument(path, title or path.name, "docx", _squeeze_blank_lines("\n".join(lines)))


def extract_document(path: Path | str) -> ExtractedDocument:
    """Read one file. Raises ExtractionError (unreadable, too big, binary, an unknown format)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ExtractionError(f"{path.name} cannot be opened ({exc.strerror or exc}).") from exc
    if not path.is_file():
        raise ExtractionError(f"{path.name} is not a file.")
    if size > MAX_FILE_BYTES:
        raise ExtractionError(f"{path.name} is {size / 2**20:.0f} MiB; Lantern reads files up to "
                              f"{MAX_FILE_BYTES // 2**20} MiB.")
    kind = kind_of(path)
    try:
        if kind == "pdf":
            doc = _read_pdf(path)
        elif kind == "docx":
            doc = _read_docx(path)
        else:
            data = path.read_bytes()
            if kind == "html":
                doc = _read_html(path, data)
            elif kind is not None:
                doc = _read_text(path, data, kind)
            elif not looks_binary(data):
                doc = _read_text(path, data, "text")    # an unknown extension that holds text
            else:
                raise ExtractionError(f"{path.name}: Lantern reads text, Markdown, code, PDF, HTML and Word "
                                      "(.docx) files, not this kind.")
    except OSError as exc:
        raise ExtractionError(f"{path.name} cannot be read ({exc.strerror or exc}).") from exc
    if len(doc.text) > MAX_TEXT_CHARS:
        doc = ExtractedDocument(doc.path, doc.title, doc.kind, doc.text[:MAX_TEXT_CHARS], doc.page_starts,
                                f"cut at {MAX_TEXT_CHARS:,} characters")
    return doc


def iter_folder(folder: Path | str, limit: int = MAX_FOLDER_FILES) -> Iterator[Path]:
    """Files under `folder` worth reading, in name order: known kinds, and unknown ones that hold text.

    Hidden files and folders and build/VCS folders (`SKIPPED_FOLDERS`) are skipped; at most
    `limit` files are listed.
    """
    folder = Path(folder)
    count = 0
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            entries = sorted(current.iterdir(), key=lambda p: p.name.lower(), reverse=True)
        except OSError as exc:
            log.info("cannot list %s: %s", current, exc)
            continue
        files = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                continue      # a link could lead outside what the user picked
            if entry.is_dir():
                if entry.name not in SKIPPED_FOLDERS:
                    stack.append(entry)
            elif entry.is_file():
                files.append(entry)
        for entry in reversed(files):
            if kind_of(entry) is None:
                try:
                    with entry.open("rb") as f:
                        if looks_binary(f.read(8192)):
                            continue
                except OSError:
                    continue
            yield entry
            count += 1
            if count >= limit:
                return
