"""Extraction (text, Markdown, code, PDF, HTML, DOCX), the per-chat index, and the browser over it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from engine.tools.browser import LocalBrowser, citations, resolve_citation
from engine.tools.extract import ExtractionError, extract_document, iter_folder
from engine.tools.index import DocumentIndex, chunk_lines, parse_document_url
from tests.tools.docs_support import write_docx, write_pdf


def test_each_kind_of_document_is_read(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("plain text\nsecond line", encoding="utf-8")
    (tmp_path / "b.md").write_text("# Title\n\n* item", encoding="utf-8")
    (tmp_path / "c.py").write_text("def f():\n    return 1\n", encoding="utf-8")
    (tmp_path / "d.html").write_text("<html><head><title>Page title</title><script>var x=1;</script></head>"
                                     "<body><h2>Section</h2><p>Body <a href='/x'>linked</a> text.</p>"
                                     "<ul><li>one</li><li>two</li></ul></body></html>", encoding="utf-8")
    write_pdf(tmp_path / "e.pdf", [["First page line", "more text"], ["Second page words"]], title="Report 7")
    write_docx(tmp_path / "f.docx", "Leave policy", ["Up to 5 days carry over."], [["Year", "Days"], ["2024", "5"]])
    (tmp_path / "g.unknownext").write_text("text in an odd file", encoding="utf-8")
    (tmp_path / "h.bin").write_bytes(b"\x00\x01\x02binary")

    assert extract_document(tmp_path / "a.txt").text == "plain text\nsecond line"
    assert extract_document(tmp_path / "b.md").kind == "markdown"
    assert extract_document(tmp_path / "c.py").kind == "code"
    html = extract_document(tmp_path / "d.html")
    assert html.title == "Page title" and "## Section" in html.text and "var x" not in html.text
    assert "Body linked text." in html.text and "* one\n* two" in html.text
    pdf = extract_document(tmp_path / "e.pdf")
    assert pdf.title == "Report 7" and "First page line" in pdf.text and "Second page words" in pdf.text
    assert len(pdf.page_starts) == 2 and pdf.text.split("\n")[pdf.page_starts[1]] == "Second page words"
    word = extract_document(tmp_path / "f.docx")
    assert word.text.startswith("# Leave policy\nUp to 5 days carry over.") and "2024 | 5" in word.text
    assert extract_document(tmp_path / "g.unknownext").text == "text in an odd file"
    with pytest.raises(ExtractionError, match="not this kind"):
        extract_document(tmp_path / "h.bin")
    assert sorted(p.name for p in iter_folder(tmp_path)) == ["a.txt", "b.md", "c.py", "d.html", "e.pdf",
                                                             "f.docx", "g.unknownext"]


def test_broken_files_give_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (tmp_path / "bad.docx").write_bytes(b"PK not a zip")
    with pytest.raises(ExtractionError, match="bad.pdf"):
        extract_document(tmp_path / "bad.pdf")
    with pytest.raises(ExtractionError, match="Word document"):
        extract_document(tmp_path / "bad.docx")
    with pytest.raises(ExtractionError, match="cannot be opened"):
        extract_document(tmp_path / "missing.txt")


def test_folders_skip_hidden_build_and_vcs_folders(tmp_path: Path) -> None:
    for rel in ("src/main.py", ".git/config", "node_modules/x/index.js", ".hidden.md", "docs/guide.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x", encoding="utf-8")
    assert sorted(str(p.relative_to(tmp_path)) for p in iter_folder(tmp_path)) == ["docs/guide.md", "src/main.py"]


def test_chunks_cover_every_line() -> None:
    text = "\n".join(f"line {i} " + "w" * (i % 50) for i in range(400)) + "\n" + "x" * 5000
    chunks = chunk_lines(text, 300)
    assert chunks[0][0] == 0
    assert all(len(t) <= 400 or "\n" not in t for _, t in chunks)
    joined = "".join(t for _, t in chunks)
    assert joined.replace("\n", "") == text.replace("\n", "")


TOPICS = ["volcano", "saxophone", "photosynthesis", "mortgage", "glacier", "cryptography", "violin", "sourdough",
          "satellite", "tax", "orchid", "marathon", "submarine", "vaccine", "chess", "espresso", "tornado",
          "lighthouse", "telescope", "bicycle", "parliament", "penguin", "quartz", "reef", "samurai"]


def test_search_finds_the_right_document_among_50() -> None:
    rng = random.Random(7)
    filler = "the of and report meeting summary project team notes update plan review document data".split()
    index = DocumentIndex()
    facts = {}
    for n in range(50):
        topic = TOPICS[n % len(TOPICS)] + ("" if n < 25 else " archive")
        words = [rng.choice(filler) for _ in range(400)]
        fact = f"The {TOPICS[n % len(TOPICS)]} budget for office {n} is {1000 + n} euros."
        words.insert(rng.randrange(len(words)), fact)
        doc = index.add(_doc(f"doc{n:02}.txt", f"Notes on {topic}", " ".join(words)))
        facts[n] = doc.id
    assert index.count() == 50
    hits = index.search("budget office 37 euros")
    assert hits[0].doc_id == facts[37]
    hits = index.search("sourdough")        # documents 7 and 32, in their titles and their facts
    assert {h.doc_id for h in hits[:2]} == {facts[7], facts[32]}
    hits = index.search("Volcanoes' budgets")    # stemmed: volcano, budget
    assert {h.doc_id for h in hits[:2]} == {facts[0], facts[25]}
    assert hits[0].snippet and "volcano" in " ".join(h.snippet.lower() for h in hits[:2])
    assert index.search("   ") == []


def _doc(name: str, title: str, text: str):  # noqa: ANN202
    from engine.tools.extract import ExtractedDocument

    return ExtractedDocument(Path(name), title, "text", text)


def test_query_text_is_never_fts_syntax() -> None:
    index = DocumentIndex()
    index.add(_doc("a.txt", "A", "alpha NEAR beta OR gamma"))
    for query in ['"unbalanced', "NEAR(alpha beta)", "alpha* OR", "col:alpha", "-beta", "(("]:
        index.search(query)   # never raises
    assert [h.title for h in index.search('"alpha')] == ["A"]


def test_browser_flow_and_citations_to_document_lines(tmp_path: Path) -> None:
    index = DocumentIndex(tmp_path / "index.sqlite3")
    body = "\n".join(["Intro line."] + [f"Filler paragraph {i}." for i in range(30)]
                     + ["Up to 5 unused days carry over to the next year.", "The rest expire on 31 March."])
    leave = index.add(_doc("leave.md", "Leave policy", body))
    index.add(_doc("other.md", "Other", "Nothing about leave here, just sick days."))
    browser = LocalBrowser(index)
    page = browser.call("search", json.dumps({"query": "unused days carry over"}))
    assert page.startswith("[0] unused days carry over\n**viewing lines [0 - ")
    assert "  * 【0†Leave policy†docs.local】" in page
    opened = browser.call("open", json.dumps({"id": 0}))
    assert opened.startswith(f"[1] Leave policy (https://docs.local/{leave.id}/leave.md)\n")
    assert "L33: Up to 5 unused days carry over to the next year." in opened
    found = browser.call("find", json.dumps({"pattern": "expire"}))
    assert found.startswith("[2] Find results for text: `expire` in `Leave policy`")
    assert "# 【0†match at L34】" in found
    offline = browser.call("open", json.dumps({"id": "https://example.com/"}))
    assert offline.startswith("Error fetching URL `https://example.com/`: not available offline")

    pages = browser.pages()
    assert [p["kind"] for p in pages] == ["search", "document", "find"]
    answer = "Five days carry over 【1†L33】 and the rest expire 【2†L1-L2】; see 【0†L4】."
    found_cites = citations(answer)
    assert [(c[2], c[3], c[4]) for c in found_cites] == [(1, 33, 33), (2, 1, 2), (0, 4, 4)]
    text_of = lambda doc_id: index.get(doc_id).text if index.get(doc_id) else None  # noqa: E731
    lines = body.split("\n")
    t1 = resolve_citation(pages, 1, 33, 33, text_of)
    assert t1 is not None and t1.doc_id == leave.id and lines[t1.first_line] == "Up to 5 unused days carry over to the next year."
    t2 = resolve_citation(pages, 2, 1, 2, text_of)
    assert t2 is not None and lines[t2.first_line] == "The rest expire on 31 March." and t2.last_line == t2.first_line
    t0 = resolve_citation(pages, 0, 4, 4, text_of)
    assert t0 is not None and t0.doc_id == leave.id
    assert resolve_citation(pages, 9, 1, 1, text_of) is None
    assert parse_document_url(f"view-source:https://docs.local/{leave.id}/leave.md") == leave.id
    assert parse_document_url("https://example.com/3/x") is None
    index.close()


def test_wrapped_long_lines_map_back_to_their_source_line() -> None:
    index = DocumentIndex()
    long_line = " ".join(f"word{i}" for i in range(60))      # wraps onto several page lines
    doc = index.add(_doc("w.txt", "Wrapped", f"short\n{long_line}\nafter"))
    browser = LocalBrowser(index)
    browser.call("open", json.dumps({"id": doc.url}))
    text = browser.call("open", json.dumps({"loc": 0}))
    after = next(int(line.split(":")[0][1:]) for line in text.split("\n") if line.endswith(": after"))
    target = resolve_citation(browser.pages(), 1, after, after, lambda i: index.get(i).text)
    assert target is not None and (target.first_line, target.last_line) == (2, 2)
    target = resolve_citation(browser.pages(), 1, 3, 4, lambda i: index.get(i).text)
    assert target is not None and (target.first_line, target.last_line) == (1, 1)
