"""The local browser against OpenAI's reference `SimpleBrowserTool` (gpt-oss package), byte for byte.

The reference runs on a fake backend that serves the same pages (search results, documents) from
the same index, so what is compared is everything the reference decides: cursors, the page header
and scrollbar, 80-column wrapping, the ~1024-token view, scrolling, `find`, link following and the
error texts. The search page text itself is compared with the reference's own HTML conversion.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from engine.tools.browser import OFFLINE_MESSAGE, LocalBrowser, document_page, search_page
from engine.tools.extract import ExtractedDocument
from engine.tools.index import DocumentIndex, parse_document_url

reference = pytest.importorskip("gpt_oss.tools.simple_browser.simple_browser_tool",
                                reason="the reference browser (gpt-oss and its deps: pydantic, chz, aiohttp, "
                                       "structlog, html2text, lxml) is not installed")
page_contents = pytest.importorskip("gpt_oss.tools.simple_browser.page_contents")
backend_mod = pytest.importorskip("gpt_oss.tools.simple_browser.backend")
harmony = pytest.importorskip("openai_harmony")
chz = pytest.importorskip("chz")

ROOT = Path(__file__).resolve().parents[2]

LONG = "\n".join(
    [f"# Leave policy 2024", "", "Up to 5 unused days carry over to the next year; the rest expire on 31 March."]
    + [f"Section {i}: employees accrue {i % 7} days of leave per month, subject to the rules in annex {i}. " * (1 + i % 3)
       for i in range(120)]
    + ["", "   indented line with trailing spaces   ", "a" * 200, "Unicode: naïve café — 東京 【not a link】 † mark"]
    + ["carry over again at the very end"]
)
DOCS = {
    "leave.md": ("Leave policy 2024", LONG),
    "handbook.txt": ("HR handbook", "General HR rules.\nHolidays are listed in the annex.\nNo carry over for sick days."),
    "notes.md": ("Meeting notes", "Budget discussion.\n\nAction: carry the budget over to Q3."),
}


def _register_o200k_base() -> None:
    """The reference counts tokens with tiktoken's o200k_base: serve it from the bundled vocabulary (offline)."""
    import tiktoken
    import tiktoken.registry

    from engine.tokenizer import PAT_STR, _ranks_from_tiktoken_file

    if "o200k_base" not in tiktoken.registry.ENCODINGS:
        ranks = _ranks_from_tiktoken_file(ROOT / "resources" / "tokenizer" / "o200k_base.tiktoken")
        tiktoken.registry.ENCODINGS["o200k_base"] = tiktoken.Encoding(
            name="o200k_base", pat_str=PAT_STR, mergeable_ranks=ranks,
            special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018})


@pytest.fixture(scope="module")
def index() -> DocumentIndex:
    idx = DocumentIndex()
    for name, (title, text) in DOCS.items():
        idx.add(ExtractedDocument(Path(name), title, "markdown", text), name=name)
    return idx


def _to_reference(page) -> object:  # noqa: ANN001
    return page_contents.PageContents(url=page.url, text=page.text, title=page.title, urls=page.urls)


def _reference_tool(index: DocumentIndex):  # noqa: ANN202
    _register_o200k_base()

    @chz.chz
    class IndexBackend(backend_mod.Backend):
        source: str = "web"

        async def search(self, query: str, topn: int, session: object) -> object:
            hits = index.search(query, limit=topn)
            return _to_reference(search_page(query, [(h.title, h.url, h.snippet) for h in hits]))

        async def fetch(self, url: str, session: object) -> object:
            doc_id = parse_document_url(url)
            doc = index.get(doc_id) if doc_id is not None else None
            if doc is None:
                raise RuntimeError(OFFLINE_MESSAGE)
            return _to_reference(document_page(doc.id, doc.url, doc.title, doc.text))

    return reference.SimpleBrowserTool(backend=IndexBackend())


def _reference_call(tool, function: str, args: str) -> str:  # noqa: ANN001
    msg = harmony.Message.from_role_and_content(harmony.Role.ASSISTANT, args).with_recipient(f"browser.{function}")

    async def run() -> list[object]:
        return [m async for m in tool._process(msg)]

    out = asyncio.run(run())
    assert len(out) == 1
    return out[0].content[0].text


CALLS = [
    ("search", {"query": "carry over", "topn": 3}),
    ("open", {"id": 0}),
    ("open", {"loc": 40, "num_lines": 6}),
    ("open", {"loc": 100}),
    ("find", {"pattern": "Carry Over"}),
    ("open", {"id": 1}),
    ("find", {"pattern": "carry", "cursor": 4}),      # a find results page: refused
    ("open", {"cursor": 99}),
    ("open", {"loc": 100000}),
    ("find", {"pattern": "no such words anywhere"}),
    ("open", {"id": 7, "cursor": 0}),                 # not a link on that page
    ("open", {"id": 2, "cursor": 0}),
    ("open", {"id": "https://example.com/page"}),     # a web URL: offline
    ("search", {"query": "holidays annex"}),
    ("open", {"id": 0, "num_lines": 2}),
    ("find", {"pattern": "東京"}),
    ("search", {"query": "zzzz"}),                     # nothing found
]


def test_every_call_answers_like_the_reference(index: DocumentIndex) -> None:
    ours = LocalBrowser(index)
    ref = _reference_tool(index)
    for function, args in CALLS:
        text = json.dumps(args, ensure_ascii=False)
        expected = _reference_call(ref, function, text)
        got = ours.call(function, text)
        assert got == expected, f"browser.{function} {text}"
    assert ours.state.page_stack == ref.tool_state.page_stack


def test_bad_arguments_answer_like_the_reference(index: DocumentIndex) -> None:
    ref = _reference_tool(index)
    ours = LocalBrowser(index)
    for function, args in [("search", "not json"), ("open", "[1, 2]"), ("lookup", "{}")]:
        assert ours.call(function, args) == _reference_call(ref, function, args)


def test_search_page_text_is_what_the_reference_makes_of_its_results_html(index: DocumentIndex) -> None:
    hits = index.search("carry over budget", limit=20)
    assert len(hits) == 3
    html = ("\n<html><body>\n<h1>Search Results</h1>\n<ul>\n"
            + "".join(f"<li><a href='{h.url}'>{h.title}</a> {h.snippet}</li>" for h in hits)
            + "\n</ul>\n</body></html>\n")
    expected = page_contents.process_html(html=html, url="", title="carry over budget", display_urls=True)
    page = search_page("carry over budget", [(h.title, h.url, h.snippet) for h in hits])
    assert page.text == expected.text
    assert page.urls == expected.urls
    assert page.title == expected.title
