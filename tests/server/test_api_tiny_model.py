"""The API serving a real (tiny, random) checkpoint through the official openai client on loopback."""

from __future__ import annotations

import pytest

from tests.server.conftest import serve

MODEL = ""


@pytest.fixture(scope="module")
def tiny_server(tiny_model_dir, tmp_path_factory):
    from engine.api import Engine

    engine = Engine.load(tiny_model_dir, device="cpu", max_context=1024)
    global MODEL
    MODEL = engine.info.name   # the checkpoint folder's name
    with serve(engine, tmp_path_factory.mktemp("store") / "responses.sqlite3", sessions=2) as s:
        assert [m.id for m in s.client().models.list().data] == [MODEL]
        yield s
    engine.close()


def test_chat_non_streaming_and_cached_tokens_on_second_turn(tiny_server) -> None:
    client = tiny_server.client()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello, who are you?"}]
    r1 = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0)
    assert r1.usage.completion_tokens <= 8 and r1.usage.prompt_tokens > 20
    assert r1.choices[0].finish_reason in ("length", "stop", "tool_calls")
    # the client resends the conversation with one more turn: its prefix comes from the KV cache
    messages += [{"role": "assistant", "content": r1.choices[0].message.content or "Hi."},
                 {"role": "user", "content": "And then?"}]
    r2 = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, temperature=0)
    cached = r2.usage.prompt_tokens_details.cached_tokens
    assert r1.usage.prompt_tokens - 5 <= cached < r2.usage.prompt_tokens
    # greedy decoding is deterministic: the same request gives the same text
    again = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, temperature=0)
    def text(r):
        m = r.choices[0].message
        return m.content, getattr(m, "reasoning", None), m.tool_calls and [c.function.arguments for c in m.tool_calls]

    assert text(again) == text(r2)


def test_chat_streaming(tiny_server) -> None:
    chunks = list(tiny_server.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Stream please"}], max_tokens=6, seed=1,
        stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.completion_tokens <= 6
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("length", "stop", "tool_calls")


def test_responses_chain_and_stream(tiny_server) -> None:
    client = tiny_server.client()
    r1 = client.responses.create(model=MODEL, input="Tell me a story.", instructions="Be brief.",
                                 max_output_tokens=6, temperature=0)
    assert r1.status in ("completed", "incomplete") and r1.usage.output_tokens <= 6
    events = list(client.responses.create(model=MODEL, input="Go on.", previous_response_id=r1.id,
                                          max_output_tokens=4, temperature=0, stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type in ("response.completed", "response.incomplete")
    final = events[-1].response
    assert final.previous_response_id == r1.id
    assert final.usage.input_tokens > r1.usage.input_tokens
    assert final.usage.input_tokens_details.cached_tokens > 0


def test_two_conversations_keep_their_prefixes(tiny_server) -> None:
    """--sessions 2: interleaved conversations each find their own KV cache again (longest common prefix)."""
    client = tiny_server.client()
    a = [{"role": "user", "content": "Conversation A is about apples and their many varieties."}]
    b = [{"role": "user", "content": "Conversation B is about bridges, arches and suspension cables."}]
    first = []
    for convo in (a, b):
        r = client.chat.completions.create(model=MODEL, messages=convo, max_tokens=2, temperature=0)
        first.append(r.usage.prompt_tokens)
        convo += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
    ra = client.chat.completions.create(model=MODEL, messages=a, max_tokens=2, temperature=0)
    rb = client.chat.completions.create(model=MODEL, messages=b, max_tokens=2, temperature=0)
    # each reuses all of its own first prompt (up to the end of its user message), not just the
    # system message the two share
    for r, n in zip((ra, rb), first):
        assert r.usage.prompt_tokens_details.cached_tokens >= n - 3, (r.usage, n)


def test_serve_loads_the_model_with_the_backend_it_is_given(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """`python -m engine serve --backend NAME --experts-on-cpu N` reaches Engine.load, as the other commands do."""
    from engine.__main__ import build_parser
    from engine.api import Engine
    from engine.server import serve as serve_module

    seen = {}

    class Stop(Exception):
        pass

    def fake_load(model_dir, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(Engine, "load", fake_load)
    args = build_parser().parse_args(["serve", "--model", str(tmp_path), "--backend", "cpu-reference",
                                      "--experts-on-cpu", "3", "--no-store", "--api-key", "k"])
    with pytest.raises(Stop):
        serve_module.cmd_serve(args)
    assert seen["backend"] == "cpu-reference" and seen["experts_on_cpu"] == 3
