"""The gpt-oss tokenizer (`o200k_harmony`) through tiktoken, built offline.

Sources, first found wins (docs/gpt-oss-spec.md §4):
1. the model folder's Hugging Face `tokenizer.json` (or its parent's, for an `original/` folder);
2. the vocabulary bundled with Lantern: `resources/tokenizer/o200k_base.tiktoken` (hash-checked);
3. the bundled `resources/tokenizer/tokenizer.json.gz`.
Nothing is ever downloaded. Special tokens live in one table, `SPECIAL_TOKENS`; engine code looks
them up by name (`Tokenizer.special("<|end|>")`) and never spells an id.

A tokenizer.json byte-identical to the one gpt-oss ships (`GPT_OSS_TOKENIZER_JSON_SHA256`, the bundled
copy) is read through the bundled `.tiktoken` file instead: the same ranks and pattern (tested), but no
`json.loads` of 27 MB, which holds the interpreter lock for about half a second and froze the window's
thread while a model loaded. Tokenizers are kept per file content, so loading a model again is free.
"""

from __future__ import annotations

import base64
import codecs
import gzip
import hashlib
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import tiktoken

from engine.errors import ModelFilesError

log = logging.getLogger(__name__)

ENCODING_NAME = "o200k_harmony"
VOCAB_SIZE = 201088            # embedding rows; ids 200013..201087 are reserved specials
NUM_BPE_TOKENS = 199998        # o200k_base ranks, ids 0..199997 (rank == id)
O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
# sha256 of gpt-oss's tokenizer.json (resources/tokenizer/tokenizer.json.gz, decompressed).
GPT_OSS_TOKENIZER_JSON_SHA256 = "0614fe83cadab421296e664e1f48f4261fa8fef6e03e63bb75c20f38e37d07d3"

# o200k pre-tokenizer pattern (spec §4.2), used when the vocabulary comes from the .tiktoken file.
PAT_STR = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# The one table of special tokens (spec §4.1; same as tiktoken's o200k_harmony).
SPECIAL_TOKENS: dict[str, int] = {
    "<|startoftext|>": 199998,
    "<|endoftext|>": 199999,
    "<|reserved_200000|>": 200000,
    "<|reserved_200001|>": 200001,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|reserved_200004|>": 200004,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|reserved_200009|>": 200009,
    "<|reserved_200010|>": 200010,
    "<|reserved_200011|>": 200011,
    "<|call|>": 200012,
    "<|endofprompt|>": 200018,   # kept from o200k_base; also named <|reserved_200018|>
} | {f"<|reserved_{i}|>": i for i in range(200013, VOCAB_SIZE)}


def resources_dir() -> Path:
    """`resources/` next to the package, or inside a PyInstaller bundle (sys._MEIPASS)."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen is not None:
        candidate = Path(frozen) / "resources"
        if candidate.is_dir():
            return candidate
    return Path(__file__).resolve().parents[1] / "resources"


def bundled_tokenizer_dir() -> Path:
    return resources_dir() / "tokenizer"


# --- reading vocabularies -------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map used by Hugging Face ByteLevel BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _ranks_from_tokenizer_json(data: dict[str, Any], source: Path) -> tuple[dict[bytes, int], str]:
    """(mergeable ranks, pattern) from a parsed HF tokenizer.json (spec §4.4)."""
    try:
        model = data["model"]
        vocab: dict[str, int] = model["vocab"]
        pretok = data["pre_tokenizer"]
        splits = pretok["pretokenizers"] if pretok.get("type") == "Sequence" else [pretok]
        pattern = next(p["pattern"]["Regex"] for p in splits if p.get("type") == "Split")
        added = {t["content"]: int(t["id"]) for t in data.get("added_tokens", [])}
    except (KeyError, TypeError, StopIteration) as exc:
        raise ModelFilesError(f"tokenizer.json is not a byte-level BPE tokenizer ({exc!r})", path=source) from exc
    if model.get("type") != "BPE":
        raise ModelFilesError("tokenizer.json is not a BPE tokenizer", path=source)
    dec = {c: b for b, c in _bytes_to_unicode().items()}
    try:
        ranks = {bytes(dec[ch] for ch in tok): int(i) for tok, i in vocab.items()}
    except KeyError as exc:
        raise ModelFilesError("tokenizer.json holds a token that is not byte-level encoded", path=source) from exc
    for name, token_id in added.items():
        known = SPECIAL_TOKENS.get(name)
        if known is not None and known != token_id:
            raise ModelFilesError(f"tokenizer.json maps {name} to {token_id}, gpt-oss uses {known}", path=source)
    return ranks, pattern


def _ranks_from_tiktoken_file(path: Path) -> dict[bytes, int]:
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != O200K_BASE_SHA256:
        raise ModelFilesError(f"o200k_base.tiktoken is damaged (sha256 {digest})", path=path)
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _check_ranks(ranks: dict[bytes, int], source: Path) -> None:
    if len(ranks) != NUM_BPE_TOKENS or max(ranks.values()) != NUM_BPE_TOKENS - 1:
        raise ModelFilesError(
            f"the tokenizer has {len(ranks)} BPE tokens (max id {max(ranks.values(), default=-1)}); "
            f"gpt-oss's has {NUM_BPE_TOKENS}", path=source,
        )


def _read_json_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelFilesError(f"tokenizer file cannot be read ({exc})", path=path) from exc
    return _parse_json(raw, path)


def _parse_json(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    except (OSError, ValueError, EOFError) as exc:
        raise ModelFilesError(f"tokenizer file cannot be read ({exc})", path=path) from exc
    if not isinstance(data, dict):
        raise ModelFilesError("tokenizer.json is not a JSON object", path=path)
    return data


# --- the tokenizer --------------------------------------------------------------------------------


class Tokenizer:
    """o200k_harmony: BPE text tokens + the harmony special tokens of `SPECIAL_TOKENS`."""

    def __init__(self, mergeable_ranks: dict[bytes, int], pat_str: str = PAT_STR, *, source: str = "") -> None:
        self.source = source
        self._enc = tiktoken.Encoding(
            ENCODING_NAME, pat_str=pat_str, mergeable_ranks=mergeable_ranks, special_tokens=SPECIAL_TOKENS
        )
        self._special_ids = frozenset(SPECIAL_TOKENS.values())
        # one name per id for display (the first name in the table wins: <|endofprompt|> for 200018)
        self._special_names: dict[int, str] = {}
        for name, token_id in SPECIAL_TOKENS.items():
            self._special_names.setdefault(token_id, name)

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    @property
    def tiktoken_encoding(self) -> tiktoken.Encoding:
        """The underlying tiktoken Encoding (for libraries that build their own token tables, e.g. grammars)."""
        return self._enc

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Token ids of `text`. Unless `allow_special`, text such as "<|end|>" is encoded as plain text."""
        if allow_special:
            return self._enc.encode(text, allowed_special="all")
        return self._enc.encode(text, allowed_special=set(), disallowed_special=())

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self._enc.decode_bytes(list(ids))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids` (special tokens as their names); invalid UTF-8 becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self._enc.decode_single_token_bytes(token_id)

    def special(self, name: str) -> int:
        """Id of a special token by name, e.g. special("<|end|>"). KeyError for an unknown name."""
        return SPECIAL_TOKENS[name]

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_ids

    def special_name(self, token_id: int) -> str | None:
        return self._special_names.get(token_id)

    def streaming_decoder(self) -> "StreamingDecoder":
        return StreamingDecoder(self)


class StreamingDecoder:
    """Turns text token ids into text as they arrive, never emitting half a UTF-8 character.

    A character split across tokens is held back until its last byte arrives; `flush()` emits
    whatever is left (an unfinished character becomes U+FFFD). Special tokens are not text:
    feeding one flushes nothing and adds nothing (the harmony parser handles them).
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        if self._tok.is_special(token_id) or not 0 <= token_id < VOCAB_SIZE:
            return ""
        return self._utf8.decode(self._tok.token_bytes(token_id))

    def feed_many(self, ids: Sequence[int]) -> str:
        return "".join(self.feed(i) for i in ids)

    def flush(self) -> str:
        out = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return out


_BY_CONTENT: dict[str, Tokenizer] = {}
"""Tokenizers built this process, by the sha256 of the file they came from."""


def _from_tokenizer_json(path: Path) -> Tokenizer:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelFilesError(f"tokenizer file cannot be read ({exc})", path=path) from exc
    digest = hashlib.sha256(raw).hexdigest()     # hashlib releases the interpreter lock on large data
    if digest in _BY_CONTENT:
        return _BY_CONTENT[digest]
    tiktoken_file = bundled_tokenizer_dir() / "o200k_base.tiktoken"
    if digest == GPT_OSS_TOKENIZER_JSON_SHA256 and path.suffix != ".gz" and tiktoken_file.is_file():
        log.info("%s is gpt-oss's own tokenizer.json: reading the same vocabulary from %s", path, tiktoken_file)
        tokenizer = _from_tiktoken_file(tiktoken_file)
    else:
        ranks, pattern = _ranks_from_tokenizer_json(_parse_json(raw, path), path)
        _check_ranks(ranks, path)
        tokenizer = Tokenizer(ranks, pattern, source=str(path))
    _BY_CONTENT[digest] = tokenizer
    return tokenizer


def _from_tiktoken_file(path: Path) -> Tokenizer:
    key = f"tiktoken:{path.resolve()}"
    if key not in _BY_CONTENT:      # built once per process (tiktoken holds the interpreter lock ~0.1 s to build)
        ranks = _ranks_from_tiktoken_file(path)
        _check_ranks(ranks, path)
        _BY_CONTENT[key] = Tokenizer(ranks, PAT_STR, source=str(path))
    return _BY_CONTENT[key]


def load_tokenizer(model_dir: Path | str | None = None) -> Tokenizer:
    """The gpt-oss tokenizer: from the model folder's tokenizer.json, else the bundled vocabulary.

    Raises ModelFilesError if a tokenizer file is present but unusable, or none can be found.
    """
    if model_dir is not None:
        folder = Path(model_dir).expanduser()
        for candidate in (folder / "tokenizer.json", folder.parent / "tokenizer.json"):
            if candidate.is_file() and (candidate.parent == folder or folder.name == "original"):
                log.info("tokenizer from %s", candidate)
                return _from_tokenizer_json(candidate)
    bundled = bundled_tokenizer_dir()
    if (bundled / "o200k_base.tiktoken").is_file():
        log.info("tokenizer from the bundled %s", bundled / "o200k_base.tiktoken")
        return _from_tiktoken_file(bundled / "o200k_base.tiktoken")
    if (bundled / "tokenizer.json.gz").is_file():
        log.info("tokenizer from the bundled %s", bundled / "tokenizer.json.gz")
        return _from_tokenizer_json(bundled / "tokenizer.json.gz")
    raise ModelFilesError("No tokenizer found: the model folder has no tokenizer.json and the bundled one is missing",
                          path=bundled)
