"""The o200k_harmony tokenizer: documented ids, round trips, both vocab sources, streaming decode."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from engine import tokenizer as tokmod
from engine.errors import ModelFilesError
from engine.tokenizer import SPECIAL_TOKENS, StreamingDecoder, Tokenizer, load_tokenizer

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "resources" / "tokenizer"

# From resources/tokenizer/README.md and openai/harmony docs/format.md (documentation, not our output).
DOC_TEXT = ('<|channel|>analysis<|message|>User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.<|end|>'
            '<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>')
DOC_IDS = [200005, 35644, 200008, 1844, 31064, 25, 392, 4827, 382, 220, 17, 659, 220, 17, 16842, 12295, 81645, 13,
           51441, 6052, 13, 200007, 200006, 173781, 200005, 17196, 200008, 17, 659, 220, 17, 314, 220, 19, 13, 200002]

SAMPLES = [
    "Hello, world! How's it going?\n\n  Indented\tand tabbed.",
    "Ünïcödé: naïve café, Straße, Ελληνικά, русский текст, עברית, العربية",
    "中文测试：你好，世界。日本語のテキスト、カタカナ。한국어 문장입니다.",
    "हिन्दी पाठ, தமிழ், ไทย ภาษา, ქართული, Հայերեն",
    "Emoji: 🙂👍🏽👨‍👩‍👧‍👦🏳️‍🌈 🇯🇵 ❤️‍🔥 and math ∑∫√∞ ≠ ≤",
    "code:\n```python\ndef f(x):\n    return x ** 2  # comment\n```\r\n",
    "   leading and trailing spaces   ",
    "numbers 1234567890 3.14159 -42 1e-9",
    "literal specials are text: <|end|> <|start|> <|return|>",
    "",
]


@pytest.fixture(scope="module")
def tok_json() -> Tokenizer:
    return tokmod._from_tokenizer_json(BUNDLED / "tokenizer.json.gz")


def test_documented_ids(tok: Tokenizer) -> None:
    assert tok.encode(DOC_TEXT, allow_special=True) == DOC_IDS
    assert tok.decode(DOC_IDS) == DOC_TEXT


def test_documented_single_tokens(tok: Tokenizer) -> None:
    # spec §4.4 (harmony docs): "analysis"=35644, "final"=17196, "assistant"=173781
    assert tok.encode("analysis") == [35644]
    assert tok.encode("final") == [17196]
    assert tok.encode("assistant") == [173781]


def test_special_table(tok: Tokenizer) -> None:
    assert tok.special("<|start|>") == 200006
    assert tok.special("<|end|>") == 200007
    assert tok.special("<|return|>") == 200002
    assert tok.special("<|call|>") == 200012
    assert tok.special("<|reserved_201087|>") == 201087
    with pytest.raises(KeyError):
        tok.special("<|nope|>")
    for name, token_id in SPECIAL_TOKENS.items():
        assert tok.is_special(token_id)
        assert tok.encode(name, allow_special=True) == [token_id]
    assert not tok.is_special(199997)
    assert tok.vocab_size == 201088


def test_specials_in_user_text_stay_text(tok: Tokenizer) -> None:
    ids = tok.encode("a <|end|> b <|start|>")
    assert not any(tok.is_special(i) for i in ids)
    assert tok.decode(ids) == "a <|end|> b <|start|>"


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert all(0 <= i < 199998 for i in ids)
    assert tok.decode(ids) == text


def test_json_and_tiktoken_sources_agree(tok: Tokenizer, tok_json: Tokenizer) -> None:
    rng = random.Random(0)
    texts = SAMPLES + ["".join(rng.choice("ab cdé中🙂\n'sTHE.,123") for _ in range(200)) for _ in range(20)]
    for text in texts:
        assert tok_json.encode(text) == tok.encode(text)
    assert tok_json.encode(DOC_TEXT, allow_special=True) == DOC_IDS
    for token_id in rng.sample(range(199998), 2000):
        assert tok_json.token_bytes(token_id) == tok.token_bytes(token_id)


def test_model_folder_tokenizer_json_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    original = tmp_path / "original"
    original.mkdir()
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    read: list[Path] = []
    monkeypatch.setattr(tokmod, "_from_tokenizer_json", lambda path: read.append(path) or "from-json")
    assert load_tokenizer(tmp_path) == "from-json"
    assert load_tokenizer(original) == "from-json"          # an original/ folder uses the repo root's file
    assert read == [tmp_path / "tokenizer.json"] * 2
    assert load_tokenizer(empty).source.endswith("o200k_base.tiktoken")


def test_bad_tokenizer_json_is_a_model_files_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelFilesError):
        load_tokenizer(tmp_path)


def test_damaged_bundled_vocab_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "resources" / "tokenizer"
    fake.mkdir(parents=True)
    data = (BUNDLED / "o200k_base.tiktoken").read_bytes()
    (fake / "o200k_base.tiktoken").write_bytes(data[:-10])
    monkeypatch.setattr(tokmod, "resources_dir", lambda: tmp_path / "resources")
    with pytest.raises(ModelFilesError, match="damaged"):
        load_tokenizer()
    (fake / "o200k_base.tiktoken").unlink()
    shutil.copy(BUNDLED / "tokenizer.json.gz", fake / "tokenizer.json.gz")
    assert load_tokenizer().source.endswith("tokenizer.json.gz")
    (fake / "tokenizer.json.gz").unlink()
    with pytest.raises(ModelFilesError, match="No tokenizer"):
        load_tokenizer()


def test_frozen_bundle_resources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "resources").mkdir()
    monkeypatch.setattr("sys._MEIPASS", str(tmp_path), raising=False)
    assert tokmod.resources_dir() == tmp_path / "resources"


def _split_char_tokens(tok: Tokenizer) -> list[int]:
    """Token ids whose bytes are not valid UTF-8 on their own (part of a multi-byte character)."""
    ids = tok.encode("👨‍👩‍👧‍👦🏳️‍🌈 ქართული 🫠🫡 𝔘𝔫𝔦𝔠𝔬𝔡𝔢")
    partial = []
    for i in ids:
        try:
            tok.token_bytes(i).decode("utf-8")
        except UnicodeDecodeError:
            partial.append(i)
    return partial


def test_streaming_decoder_never_emits_half_characters(tok: Tokenizer) -> None:
    assert _split_char_tokens(tok), "the sample must contain characters split across tokens"
    for text in SAMPLES + ["👨‍👩‍👧‍👦🏳️‍🌈 ქართული 🫠🫡 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]:
        dec = StreamingDecoder(tok)
        pieces = [dec.feed(i) for i in tok.encode(text)] + [dec.flush()]
        assert "".join(pieces) == text
        assert all("\ufffd" not in p for p in pieces)


def test_streaming_decoder_ignores_specials_and_flushes_incomplete(tok: Tokenizer) -> None:
    dec = tok.streaming_decoder()
    partial = _split_char_tokens(tok)[0]
    assert dec.feed(partial) == ""
    assert dec.feed(tok.special("<|end|>")) == ""
    assert dec.flush() == "\ufffd"
    assert dec.feed(tok.encode("ok")[0]) == "ok"


def test_gpt_oss_tokenizer_json_is_read_through_the_bundled_vocabulary(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The 27 MB json.loads held the interpreter lock ~0.5 s (the window froze while a model loaded)."""
    import gzip
    import hashlib

    raw = gzip.decompress((BUNDLED / "tokenizer.json.gz").read_bytes())
    assert hashlib.sha256(raw).hexdigest() == tokmod.GPT_OSS_TOKENIZER_JSON_SHA256
    (tmp_path / "tokenizer.json").write_bytes(raw)
    monkeypatch.setattr(tokmod, "_BY_CONTENT", {})
    monkeypatch.setattr(tokmod.json, "loads", lambda *_a, **_k: pytest.fail("parsed the known tokenizer.json"))
    tok = load_tokenizer(tmp_path)
    assert tok.source.endswith("o200k_base.tiktoken")
    assert tok.encode(DOC_TEXT, allow_special=True) == DOC_IDS
    assert load_tokenizer(tmp_path) is tok                     # loading a model again: nothing re-read
    other = tmp_path / "other"
    other.mkdir()
    (other / "tokenizer.json").write_bytes(raw.replace(b'"type"', b'"type" ', 1))   # same JSON, other bytes
    monkeypatch.undo()
    assert load_tokenizer(other).source == str(other / "tokenizer.json")
