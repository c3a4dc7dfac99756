"""Full-text search over titles and messages: snippets with the match, newest first, unicode,
and input that would be FTS5 syntax is searched as plain words."""

from __future__ import annotations

import pytest

from app.history import HistoryStore, SearchHit
from app.history.search import fts_query


def message_ids(hits: list[SearchHit]) -> list[int | None]:
    """Message hits only (a first user message also became the title, which is a hit of its own)."""
    return [h.message_id for h in hits if h.field != "title"]


def marked(hit: SearchHit) -> list[str]:
    return [hit.snippet[a:b] for a, b in hit.highlights]


def test_snippets_mark_the_match_and_hits_are_newest_first(store: HistoryStore) -> None:
    old = store.create_conversation("Gardening")
    m_old = store.add_message(old.id, None, "user", "How deep should I plant tulip bulbs in clay soil?")
    new = store.create_conversation("Flowers")
    m_new = store.add_message(new.id, None, "user", "Do tulips need full sun?")
    filler = " ".join(f"word{i}" for i in range(200))
    m_long = store.add_message(new.id, m_new.id, "assistant", f"{filler} Tulip care is easy. {filler}")

    hits = store.search("tulip")
    assert [h.message_id for h in hits] == [m_long.id, m_new.id, m_old.id]  # prefix: "tulips" matches
    assert [h.created_at for h in hits] == sorted((h.created_at for h in hits), reverse=True)
    assert [w.lower() for w in marked(hits[0])] == ["tulip"]
    assert marked(hits[1]) == ["tulips"]
    long_hit = hits[0]
    assert long_hit.snippet.startswith("…") and long_hit.snippet.endswith("…")
    assert len(long_hit.snippet) < 200 and "Tulip care" in long_hit.snippet
    assert "\ue000" not in long_hit.snippet and "\ue001" not in long_hit.snippet
    assert (long_hit.role, long_hit.field, long_hit.conversation_id, long_hit.conversation_title) == (
        "assistant", "content", new.id, "Flowers")

    # Every word must appear (AND), in any order.
    assert message_ids(store.search("clay tulip")) == [m_old.id]
    assert store.search("tulip volcano") == []


def test_titles_and_reasoning_are_searched(store: HistoryStore) -> None:
    c = store.create_conversation("Quarterly budget review")
    u = store.add_message(c.id, None, "user", "Summarise this")
    a = store.add_message(c.id, u.id, "assistant", "Done.", reasoning="The spreadsheet totals look off.")
    title_hits = store.search("budget")
    assert [(h.field, h.message_id, h.conversation_id) for h in title_hits] == [("title", None, c.id)]
    assert marked(title_hits[0]) == ["budget"]
    reasoning_hits = store.search("spreadsheet")
    assert [(h.field, h.message_id) for h in reasoning_hits] == [("reasoning", a.id)]
    # A renamed title is found under its new name only.
    store.rename_conversation(c.id, "Annual plan")
    assert store.search("budget") == []
    assert [h.conversation_id for h in store.search("annual")] == [c.id]


def test_edited_text_and_all_branches_are_searchable(store: HistoryStore) -> None:
    c = store.create_conversation()
    u = store.add_message(c.id, None, "user", "first version about zebras")
    edit = store.add_message(c.id, None, "user", "second version about giraffes")
    assert message_ids(store.search("zebras")) == [u.id]  # not on the active branch, still found
    store.update_message(edit.id, content="now about okapis")
    assert store.search("giraffes") == []
    assert message_ids(store.search("okapis")) == [edit.id]


def test_unicode_search(store: HistoryStore) -> None:
    c = store.create_conversation()
    de = store.add_message(c.id, None, "user", "Grüße aus München und Köln")
    ru = store.add_message(c.id, de.id, "assistant", "Привет, как дела в Москве?")
    jp = store.add_message(c.id, ru.id, "user", "東京で寿司を食べた 🍣")
    gr = store.add_message(c.id, jp.id, "assistant", "Καλημέρα κόσμε")

    assert message_ids(store.search("munchen")) == [de.id]  # accents ignored
    assert message_ids(store.search("KÖLN")) == [de.id]  # case ignored
    title_hit, message_hit = store.search("munchen")  # the title (newer) and the message
    assert (title_hit.field, message_hit.message_id) == ("title", de.id)
    assert marked(title_hit) == marked(message_hit) == ["München"]
    assert message_ids(store.search("москве")) == [ru.id]
    assert message_ids(store.search("МОСКВЕ")) == [ru.id]
    assert message_ids(store.search("東京")) == [jp.id]  # word-prefix match on a CJK run
    assert message_ids(store.search("καλημέρα")) == [gr.id]  # case folded (accents: Latin script only)
    hit = [h for h in store.search("Привет") if h.field != "title"][0]
    assert marked(hit) == ["Привет"]


@pytest.mark.parametrize("query", ['"', "AND", "(", "tulip*", "NEAR(a b)", "-x", "col:tulip", "a OR", "''", "   "])
def test_fts_syntax_in_the_query_never_raises(store: HistoryStore, query: str) -> None:
    c = store.create_conversation()
    store.add_message(c.id, None, "user", "AND tulip col x")
    hits = store.search(query)
    assert isinstance(hits, list)


def test_query_building() -> None:
    assert fts_query("  ") is None
    assert fts_query("- * (") is None
    assert fts_query('say "hi"') == '"say"* """hi"""*'
    assert fts_query("tulip AND") == '"tulip"* "AND"*'
