"""Markdown rendering: highlighted code blocks with copy links, raw HTML shown as text, open fences."""

from __future__ import annotations

from app.render import COPY_SCHEME, DARK, LIGHT, render_markdown, render_plain


def test_code_blocks_are_highlighted_and_copyable() -> None:
    r = render_markdown("Intro\n\n```python\nif a < b:\n    print('x')\n```\n\ntext\n\n```\nraw & <tag>\n```\n")
    assert r.code_blocks == ("if a < b:\n    print('x')", "raw & <tag>")
    assert f'href="{COPY_SCHEME}:0"' in r.html and f'href="{COPY_SCHEME}:1"' in r.html
    assert '<span style="color: #' in r.html  # pygments colours inline (Qt ignores class selectors)
    assert ">python<" in r.html


def test_model_output_cannot_inject_markup() -> None:
    r = render_markdown("hello <img src=x onerror=y> <b>bold</b>\n\n<div>block</div>")
    assert "<img" not in r.html and "<b>bold" not in r.html and "<div>block" not in r.html
    assert "&lt;b&gt;" in r.html


def test_unterminated_fence_while_streaming_renders_as_code() -> None:
    r = render_markdown("Look:\n\n```js\nconst a = 1;")
    assert r.code_blocks == ("const a = 1;",)


def test_themes_differ_and_plain_text_is_escaped() -> None:
    text = "```python\nx = 1\n```"
    assert render_markdown(text, LIGHT).html != render_markdown(text, DARK).html
    assert render_plain("a < b\nc", DARK).count("<br>") == 1 and "&lt;" in render_plain("a < b")


def test_tables_get_borders() -> None:
    r = render_markdown("| a | b |\n|---|---|\n| 1 | 2 |")
    assert '<table border="1"' in r.html and "<th " in r.html and ">1</td>" in r.html


def test_blocks_split_at_blank_lines_outside_fences_and_lists() -> None:
    from app.render import split_blocks

    text = "Intro\n\n- a\n\n- b\n\nNext\n\n```py\nx = 1\n\ny = 2\n```\n\n| a |\n|---|\n\nlast li"
    blocks, tail = split_blocks(text)
    assert blocks == ["Intro\n\n- a\n\n- b", "Next", "```py\nx = 1\n\ny = 2\n```"]   # a loose list stays one
    assert tail == "| a |\n|---|\n\nlast li"                                           # the last line may grow
    assert "\n\n".join(blocks + [tail]) == text


def test_code_links_are_numbered_after_earlier_blocks() -> None:
    r = render_markdown("```\nx\n```", first_code=3)
    assert f'href="{COPY_SCHEME}:3"' in r.html and r.code_blocks == ("x",)
    plain = render_markdown("```python\nx = 1", highlight=False)
    assert plain.code_blocks == ("x = 1",) and '<span style="color: #' not in plain.html


def test_math_is_found_by_arithmatex_and_drawn_by_ziamath() -> None:
    """Inline and display math become images (drawn off the GUI thread; the TeX shows meanwhile);
    dollar amounts and code are left alone."""
    from app.math_images import MATH, Formula

    text = "Euler: $e^{i\\pi}+1=0$, costs $5 or $10.\n\n$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$\n\nCode: `$x$`"
    render_markdown.cache_clear()
    first = render_markdown(text + " ")
    assert "e^{i\\pi}+1=0</code>" in first.html and "$5 or $10" in first.html and "$x$</code>" in first.html
    for tex, display in (("e^{i\\pi}+1=0", False), ("\\int_0^1 x^2\\,dx = \\frac{1}{3}", True)):
        assert MATH.draw_now(Formula(tex, display, LIGHT.text)) is not None   # (here, on the test's thread)
    render_markdown.cache_clear()
    drawn = render_markdown(text)
    assert not drawn.math_pending and drawn.html.count('src="data:image/png;base64,') == 2
    assert '<td align="center"><img' in drawn.html and "$5 or $10" in drawn.html
    assert MATH.draw_now(Formula("\\begin{nonsense}", False, LIGHT.text)) is None   # shown as TeX, no error


def test_a_long_open_block_is_cut_where_it_stays_cut_while_it_grows() -> None:
    """Streaming: a paragraph with no blank line must not be re-rendered whole on every update."""
    from app.render import STREAM_TAIL_CHARS, split_blocks

    text = "".join(f"line {i} of a long answer without blank lines\n" for i in range(200))
    blocks, tail = split_blocks(text, streaming=True)
    assert blocks and len(tail) <= STREAM_TAIL_CHARS + 60 and all(len(b) >= STREAM_TAIL_CHARS for b in blocks)
    grown, _ = split_blocks(text + "more words\nand more", streaming=True)
    assert grown[:len(blocks)] == blocks                       # the earlier cuts do not move
    assert "\n".join(blocks + [tail]) == text                   # nothing lost
    assert split_blocks(text)[0] == []                          # not streaming: one block, as Markdown sees it
    fenced, fenced_tail = split_blocks("```\n" + "x = 1\n" * 400, streaming=True)
    assert fenced == [] and fenced_tail.startswith("```")       # never cut inside a code block
