"""A small fake Hugging Face hub on 127.0.0.1 for the model manager tests (no internet).

It answers the routes huggingface_hub 2.4 and our downloader use:
  GET /api/models/<repo>[/revision/<rev>]?blobs=true   -> id, sha, siblings (size, blobId, lfs.sha256/size)
  GET /<repo>/resolve/<rev>/<file>                      -> LFS files: 302 to /cdn/<sha256>; others: the bytes
  GET /cdn/<sha256>                                     -> the bytes, honouring `Range: bytes=N-`
It counts the body bytes it sends per file, can go slowly, corrupt a file once, or drop a
connection midway once.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from safetensors.numpy import save as st_save

REVISION = "0123456789abcdef0123456789abcdef01234567"
LFS_SUFFIXES = (".safetensors", ".bin")


def tiny_config() -> dict:
    """A valid (engine.config rules) gpt-oss config with tiny sizes."""
    return {
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "num_hidden_layers": 2,
        "num_local_experts": 4, "experts_per_token": 2, "num_experts_per_tok": 2, "vocab_size": 256,
        "hidden_size": 64, "intermediate_size": 64, "head_dim": 16, "num_attention_heads": 4,
        "num_key_value_heads": 2, "sliding_window": 8, "initial_context_length": 128,
        "rope_theta": 150000, "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                                               "beta_slow": 1.0, "original_max_position_embeddings": 128},
        "swiglu_limit": 7.0, "rms_norm_eps": 1e-5,
    }


def tiny_repo(shard_bytes: int = 256 * 1024, shards: int = 3, seed: int = 0) -> dict[str, bytes]:
    """Files of a gpt-oss-like repo: root HF layout (what the app fetches) plus original/ and metal/."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    weight_map = {}
    for i in range(shards):
        name = f"model-{i:05d}-of-{shards - 1:05d}.safetensors"
        tensor = f"model.layers.{i}.blob"
        files[name] = st_save({tensor: rng.integers(0, 256, size=shard_bytes, dtype=np.uint8)})
        weight_map[tensor] = name
    files["model.safetensors.index.json"] = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
    files["config.json"] = json.dumps(tiny_config()).encode()
    files["generation_config.json"] = json.dumps({"eos_token_id": [200002, 199999, 200012]}).encode()
    files["tokenizer.json"] = json.dumps({"model": {"type": "BPE"}, "pad": "x" * 5000}).encode()
    files["tokenizer_config.json"] = b"{}"
    files["README.md"] = b"# tiny\n"
    files["original/config.json"] = b"{}"
    files["original/model.safetensors"] = st_save({"x": rng.integers(0, 256, size=4096, dtype=np.uint8)})
    files["metal/model.bin"] = bytes(4096)
    return files


def write_repo(root: Path, files: dict[str, bytes], only_root: bool = True) -> Path:
    for name, data in files.items():
        if only_root and "/" in name:
            continue
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeHub:
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)
    delay_per_chunk_s: float = 0.0
    chunk: int = 64 * 1024
    corrupt_once: set[str] = field(default_factory=set)
    drop_once_after: dict[str, int] = field(default_factory=dict)    # file -> bytes sent before closing
    served: dict[str, int] = field(default_factory=dict)             # file -> body bytes sent
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    ignore_range: bool = False                                       # answer 200 with the whole file
    down: bool = False                                               # hang up on every request (no network)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._by_sha: dict[str, tuple[str, str]] = {}
        self._generation = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                hub._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def total_served(self, names: set[str] | None = None) -> int:
        with self._lock:
            return sum(v for k, v in self.served.items() if names is None or k in names)

    def reset_counts(self) -> None:
        """Start counting afresh; connections still open from before no longer count."""
        with self._lock:
            self._generation += 1
            self.served.clear()
            self.requests.clear()

    # ---- routes ----------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        if self.down:
            h.close_connection = True
            return
        parsed = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(parsed.path)
        with self._lock:
            self.requests.append(("GET", path, h.headers.get("Range")))
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if m:
            return self._model_info(h, m.group(1))
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            repo, _rev, name = m.groups()
            if repo in self.gated:
                return self._error(h, 403, "GatedRepo")
            data = self.repos.get(repo, {}).get(name)
            if data is None:
                return self._error(h, 404, "EntryNotFound")
            if name.endswith(LFS_SUFFIXES):
                sha = hashlib.sha256(data).hexdigest()
                self._by_sha[sha] = (repo, name)
                h.send_response(302)
                h.send_header("Location", f"/cdn/{sha}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            return self._send_file(h, name, data)
        m = re.fullmatch(r"/cdn/([0-9a-f]{64})", path)
        if m and m.group(1) in self._by_sha:
            repo, name = self._by_sha[m.group(1)]
            return self._send_file(h, name, self.repos[repo][name])
        self._error(h, 404, None)

    def _error(self, h: BaseHTTPRequestHandler, code: int, error_code: str | None) -> None:
        body = json.dumps({"error": error_code or "not found"}).encode()
        h.send_response(code)
        if error_code:
            h.send_header("X-Error-Code", error_code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _model_info(self, h: BaseHTTPRequestHandler, repo: str) -> None:
        if repo in self.gated:
            return self._error(h, 401, "GatedRepo")
        files = self.repos.get(repo)
        if files is None:
            return self._error(h, 404, "RepoNotFound")
        siblings = []
        for name, data in sorted(files.items()):
            sib = {"rfilename": name, "size": len(data), "blobId": git_blob_sha1(data)}
            if name.endswith(LFS_SUFFIXES):
                sib["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
            siblings.append(sib)
        body = json.dumps({"id": repo, "modelId": repo, "sha": REVISION, "private": False, "gated": False,
                           "siblings": siblings}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _send_file(self, h: BaseHTTPRequestHandler, name: str, data: bytes) -> None:
        with self._lock:
            if name in self.corrupt_once:
                self.corrupt_once.discard(name)
                data = bytes([data[0] ^ 0xFF]) + data[1:-1] + bytes([data[-1] ^ 0xFF])
            drop_after = self.drop_once_after.pop(name, None)
            generation = self._generation
        start = 0
        rng = None if self.ignore_range else h.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            start = int(m.group(1)) if m else 0
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        pos = start
        sent = 0
        try:
            while pos < len(data):
                piece = data[pos:pos + self.chunk]
                if drop_after is not None and sent + len(piece) > drop_after:
                    piece = piece[:max(0, drop_after - sent)]
                h.wfile.write(piece)
                h.wfile.flush()
                with self._lock:
                    if generation == self._generation:
                        self.served[name] = self.served.get(name, 0) + len(piece)
                pos += len(piece)
                sent += len(piece)
                if drop_after is not None and sent >= drop_after:
                    h.close_connection = True
                    h.connection.shutdown(2)
                    return
                if self.delay_per_chunk_s:
                    time.sleep(self.delay_per_chunk_s)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
