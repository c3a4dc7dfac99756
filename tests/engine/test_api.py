"""Engine / Session API on a tiny random checkpoint: KV reuse across turns, cancel, errors, usage."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from engine.api import Engine, Session, common_prefix_len, model_display_name  # noqa: E402
from engine.errors import ContextFull, ModelFilesError  # noqa: E402
from engine.types import Delta, Finished, GenerationParams, Message  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GREEDY = GenerationParams(temperature=0.0, max_tokens=5, reasoning_effort="low")
SHORT = GenerationParams(temperature=0.0, max_tokens=2, reasoning_effort="low")   # for reuse-only checks


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Iterator[Engine]:
    eng = Engine.load(tiny_model_dir, device="cpu", max_context=512)
    yield eng
    eng.close()


class FeedRecorder:
    """Wraps the model's forward to record every token it is fed (and the cache length before)."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, list[int]]] = []
        model = engine.model
        original = model.forward

        def forward(tokens, cache=None, **kw):
            self.calls.append((cache.length if cache is not None else -1, tokens.reshape(-1).tolist()))
            return original(tokens, cache, **kw)

        monkeypatch.setattr(model, "forward", forward)

    @property
    def fed(self) -> list[int]:
        return [t for _, toks in self.calls for t in toks]


def _run(engine: Engine, session: Session, messages: list[Message], params: GenerationParams = GREEDY,
         **kw) -> tuple[list[Delta], Finished]:
    events = list(engine.chat(session, messages, params, **kw))
    assert sum(isinstance(e, Finished) for e in events) == 1 and isinstance(events[-1], Finished)
    return [e for e in events if isinstance(e, Delta)], events[-1]


def test_info(engine: Engine, tiny_model_dir: Path) -> None:
    info = engine.info
    assert info.device == "cpu" and info.max_context == 512
    assert info.layout == "huggingface" and info.path == tiny_model_dir
    assert info.num_layers == engine.config.num_hidden_layers and info.bytes_on_disk > 0


def test_second_turn_prefills_only_new_tokens_and_matches_cold_run(engine: Engine,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _check_second_turn(engine, monkeypatch)


@pytest.mark.gpu
def test_second_turn_on_cuda(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    eng = Engine.load(tiny_model_dir, device="cuda", max_context=512)
    try:
        assert eng.info.device.startswith("cuda")
        _check_second_turn(eng, monkeypatch)
    finally:
        eng.close()


def _check_second_turn(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    turn1 = [Message("user", "Hi there!")]
    session = engine.new_session()
    _, fin1 = _run(engine, session, turn1)
    prompt1 = engine.render(turn1, GREEDY)
    assert fin1.usage.reused_tokens == 0 and fin1.usage.prompt_tokens == len(prompt1)
    after1 = session.tokens
    assert after1[:len(prompt1)] == tuple(prompt1)

    turn2 = turn1 + [Message("assistant", "Hello! How can I help?", channel="final"), Message("user", "Tell me a joke.")]
    prompt2 = engine.render(turn2, GREEDY)
    rec = FeedRecorder(engine, monkeypatch)
    deltas_warm, fin2 = _run(engine, session, turn2)
    reused = fin2.usage.reused_tokens
    assert reused == common_prefix_len(after1, prompt2) >= len(prompt1)
    assert rec.calls[0][0] == reused                           # prefill starts right after the reused part
    assert rec.fed[:len(prompt2) - reused] == prompt2[reused:]  # and feeds only the rest
    warm_tokens = session.tokens

    cold = engine.new_session()
    rec.calls.clear()
    deltas_cold, fin_cold = _run(engine, cold, turn2)
    assert fin_cold.usage.reused_tokens == 0 and rec.calls[0][0] == 0
    assert cold.tokens == warm_tokens                         # same greedy tokens as the cold run
    assert deltas_cold == deltas_warm and fin_cold.reason == fin2.reason
    assert fin_cold.usage.completion_tokens == fin2.usage.completion_tokens


def test_regenerate_and_edit_reuse_the_prefix(engine: Engine) -> None:
    session = engine.new_session()
    convo = [Message("user", "First question"), Message("assistant", "First answer", channel="final"),
             Message("user", "Second question")]
    _run(engine, session, convo, SHORT)
    prompt = engine.render(convo, SHORT)
    _, again = _run(engine, session, convo, SHORT)                   # regenerate: all but the last prompt token
    assert again.usage.reused_tokens == len(prompt) - 1
    edited = convo[:2] + [Message("user", "Second question, edited")]
    _, fin_edit = _run(engine, session, edited, SHORT)
    assert fin_edit.usage.reused_tokens == common_prefix_len(prompt, engine.render(edited, SHORT))
    assert fin_edit.usage.reused_tokens > len(engine.render(convo[:2], SHORT)) - 2


def test_cancel_within_one_token(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    session = engine.new_session()
    rec = FeedRecorder(engine, monkeypatch)
    params = GenerationParams(temperature=1.0, seed=3, max_tokens=200, reasoning_effort="low")
    _, fin = _run(engine, session, [Message("user", "Count to a hundred")], params,
                  should_stop=lambda: len(rec.calls) >= 4)   # stop after the prefill and 3 decode steps
    assert fin.reason == "cancelled"
    assert 3 <= fin.usage.completion_tokens <= 4
    assert len(session.tokens) == len(rec.fed)               # the session knows exactly what the cache holds


def test_cancel_before_start(engine: Engine) -> None:
    _, fin = _run(engine, engine.new_session(), [Message("user", "x")], should_stop=lambda: True)
    assert fin.reason == "cancelled" and fin.usage.completion_tokens == 0


def test_length_and_usage(engine: Engine) -> None:
    session = engine.new_session()
    params = GenerationParams(temperature=1.0, seed=0, max_tokens=5)
    _, fin = _run(engine, session, [Message("user", "Go on")], params)
    if fin.reason == "length":
        assert fin.usage.completion_tokens == 5
    else:  # a random model may sample a stop token first
        assert fin.reason in ("stop", "tool_call")
    assert fin.usage.decode_tokens_per_s > 0 and fin.usage.prefill_tokens_per_s > 0


def test_context_full_is_raised_before_any_event(engine: Engine) -> None:
    long = " ".join(f"word{i}" for i in range(400))
    with pytest.raises(ContextFull) as info:
        engine.chat(engine.new_session(), [Message("user", long)], GREEDY)
    assert info.value.limit_tokens == 512 and info.value.used_tokens > 512


def test_out_of_memory_ends_the_stream_with_an_error(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.kv_cache as kv

    def boom(*_a, **_k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(kv, "KVCache", boom)
    _, fin = _run(engine, engine.new_session(), [Message("user", "hi")])
    assert fin.reason == "error" and "Not enough memory" in (fin.error or "")


def test_session_of_another_engine_is_refused(engine: Engine, tiny_model_dir: Path) -> None:
    other = Engine.load(tiny_model_dir, device="cpu", max_context=128)
    try:
        with pytest.raises(Exception, match="another loaded model"):
            engine.chat(other.new_session(), [Message("user", "hi")], GREEDY)
    finally:
        other.close()


def test_bad_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError):
        Engine.load(tmp_path, device="cpu")


def test_tokenizer_and_harmony_do_not_import_torch() -> None:
    code = "import engine.harmony, engine.tokenizer, engine.chat_cli, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sessions_share_one_cache(engine: Engine) -> None:
    a, b = engine.new_session(), engine.new_session()
    convo = [Message("user", "Hello")]
    _run(engine, a, convo, SHORT)
    cache = a._cache
    _, fin_b = _run(engine, b, convo, SHORT)
    assert fin_b.usage.reused_tokens == 0 and b._cache is cache and a._cache is None and a.tokens == ()
    _, fin_a = _run(engine, a, convo, SHORT)                         # a takes it back and re-prefills
    assert fin_a.usage.reused_tokens == 0 and a._cache is cache
    _, again = _run(engine, a, convo, SHORT)
    assert again.usage.reused_tokens == len(engine.render(convo, SHORT)) - 1


def test_model_display_name() -> None:
    snap = Path("/hf/hub/models--openai--gpt-oss-20b/snapshots/0123abc")
    assert model_display_name(snap) == "openai/gpt-oss-20b"
    assert model_display_name(Path("/models/gpt-oss-120b")) == "gpt-oss-120b"


def test_abandoned_stream_does_not_corrupt_the_session(engine: Engine) -> None:
    session = engine.new_session()
    convo = [Message("user", "Hello")]
    params = GenerationParams(temperature=0.0, max_tokens=4)
    old = engine.chat(session, convo, params)
    next(iter(old), None)                                     # started, then abandoned mid-reply
    _, fin = _run(engine, session, convo, params)             # a new stream takes over the cache
    tokens = session.tokens
    rest = list(old)                                          # resuming the old one: it stops, changes nothing
    assert isinstance(rest[-1], Finished) and rest[-1].reason == "cancelled"
    assert session.tokens == tokens and len(tokens) == session._cache.length
    _, again = _run(engine, session, convo, params)
    assert again.usage.reused_tokens == len(engine.render(convo, params)) - 1


def test_invalid_params_are_refused_before_any_event(engine: Engine) -> None:
    from engine.errors import EngineError

    with pytest.raises(EngineError, match="top_p"):
        engine.chat(engine.new_session(), [Message("user", "x")], GenerationParams(top_p=0.0))


def test_a_tool_call_streams_with_its_recipient(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model (forced, greedy) writes a tool call: its deltas carry the recipient; the turn ends tool_call."""
    tok = engine.tokenizer
    script = tok.encode("<|channel|>analysis<|message|>Use the tool.<|end|><|start|>assistant<|channel|>commentary"
                        ' to=functions.get_weather <|constrain|>json<|message|>{"city": "Oslo"}<|call|>',
                        allow_special=True)
    messages = [Message("user", "Weather in Oslo?")]
    params = GenerationParams(temperature=0.0, max_tokens=len(script) + 4)
    prompt_len = len(engine.render(messages, params))
    model = engine.model
    original = model.forward

    def forward(tokens, cache, **kw):   # the real forward (the cache stays right), then force the next token
        logits = original(tokens, cache, **kw).clone()
        written = cache.length - prompt_len   # script tokens already fed back (a new session holds no prefix)
        logits[-1] = -1e9
        logits[-1, script[min(max(written, 0), len(script) - 1)]] = 1e9
        return logits

    monkeypatch.setattr(model, "forward", forward)
    deltas, fin = _run(engine, engine.new_session(), messages, params)
    assert fin.reason == "tool_call"
    assert "".join(d.text for d in deltas if d.recipient is None) == "Use the tool."
    call = [d for d in deltas if d.recipient is not None]
    assert {(d.channel, d.recipient) for d in call} == {("commentary", "functions.get_weather")}
    assert "".join(d.text for d in call) == '{"city": "Oslo"}'


def test_progress_events_come_per_prefill_chunk_and_per_token(engine: Engine) -> None:
    from engine.types import DecodeProgress, PrefillProgress

    session = engine.new_session()
    long = " ".join(f"w{i}" for i in range(150))            # > 256 prompt tokens: two prefill chunks
    events = list(engine.chat(session, [Message("user", long)], GREEDY))
    prefill = [e for e in events if isinstance(e, PrefillProgress)]
    decode = [e for e in events if isinstance(e, DecodeProgress)]
    fin = events[-1]
    assert isinstance(fin, Finished) and fin.error_kind is None and not fin.is_bug
    total = fin.usage.prompt_tokens - fin.usage.reused_tokens
    assert [p.done for p in prefill] == [min(256 * (i + 1), total) for i in range(len(prefill))] and len(prefill) == 2
    assert all(p.total == total and p.reused == 0 for p in prefill) and prefill[-1].fraction == 1.0
    assert all(b.elapsed_s >= a.elapsed_s for a, b in zip(prefill, prefill[1:])) and prefill[0].seconds_left is not None
    assert events.index(prefill[-1]) < min(i for i, e in enumerate(events) if isinstance(e, (Delta, DecodeProgress)))
    assert [d.tokens for d in decode] == list(range(1, fin.usage.completion_tokens + 1))
    # the next turn reuses the cache: its progress counts only the new tokens, after `reused`
    again = list(engine.chat(session, [Message("user", long), Message("assistant", "ok", channel="final"),
                                       Message("user", "more")], GREEDY))
    step = next(e for e in again if isinstance(e, PrefillProgress))
    assert step.reused > 0 and step.reused + step.total == again[-1].usage.prompt_tokens


def test_a_failure_that_is_not_the_users_is_marked_as_a_bug(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a, **_k):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(engine.model, "forward", broken)
    _, fin = _run(engine, engine.new_session(), [Message("user", "hi")])
    assert fin.reason == "error" and fin.error_kind == "bug" and fin.is_bug and "ZeroDivisionError" in fin.error


def test_errors_are_sorted_into_the_users_and_bugs() -> None:
    from engine.errors import DeviceError, OutOfMemory, error_kind

    assert error_kind(ContextFull(10, 5)) == "context_full"
    assert error_kind(OutOfMemory("x")) == error_kind(MemoryError()) == "out_of_memory"
    assert error_kind(ModelFilesError("x")) == "model_files" and error_kind(DeviceError("x")) == "device"
    assert error_kind(ValueError("x")) == "bug"
