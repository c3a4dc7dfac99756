"""A small fake Hugging Face hub on 127.0.0.1 for the model manager tests (no internet).

It answers the routes huggingface_hub 2.4 and our downloader use, shaped like the real hub:
  GET  /api/models/<repo>[/revision/<rev>]   -> id, sha (the commit), siblings (size, blobId, lfs.sha256/size)
  HEAD /<repo>/resolve/<rev>/<file>          -> X-Repo-Commit; LFS files: 302 to the CDN with X-Linked-Etag
                                                (the sha256) and X-Linked-Size; other files: ETag (git blob sha1)
  GET  /<repo>/resolve/<rev>/<file>          -> LFS files: 302 to the CDN; others: the bytes
  GET  <cdn>/cdn/<sha256>                    -> the bytes, honouring `Range: bytes=N-`
The CDN is a second server (another origin, as on the real hub), so the client drops the token when
it follows the redirect and huggingface_hub reads LFS metadata from the redirect itself.

A repo has a history of commits: `publish()` makes a new head (the old commit still resolves),
`drop_commit()` removes one (history rewritten: it answers 404 RevisionNotFound). It can require an
access token, go slowly, corrupt a file once or always, drop a connection midway once, or hang up on
every request. It counts the body bytes it sends per file and records each request.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
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


def changed_shard(files: dict[str, bytes], name: str, seed: int = 99) -> dict[str, bytes]:
    """The same repo with one weight shard replaced by another of the same size (a new upload)."""
    rng = np.random.default_rng(seed)
    old = files[name]
    tensor = next(k for k in json.loads(files["model.safetensors.index.json"])["weight_map"]
                  if json.loads(files["model.safetensors.index.json"])["weight_map"][k] == name)
    header_len = int.from_bytes(old[:8], "little")
    payload = len(old) - 8 - header_len
    new = st_save({tensor: rng.integers(0, 256, size=payload, dtype=np.uint8)})
    assert len(new) == len(old) and new != old
    return {**files, name: new}


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


def unreachable_url() -> str:
    """A loopback URL nothing listens on (connection refused), like a hub that is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _commit_sha(files: dict[str, bytes]) -> str:
    h = hashlib.sha1()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


@dataclass
class FakeHub:
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)   # repo -> files at the head commit
    gated: set[str] = field(default_factory=set)
    required_token: str | None = None                                # every hub route needs "Bearer <token>"
    delay_per_chunk_s: float = 0.0
    chunk: int = 64 * 1024
    corrupt_once: set[str] = field(default_factory=set)
    corrupt_always: set[str] = field(default_factory=set)
    drop_once_after: dict[str, int] = field(default_factory=dict)    # file -> bytes sent before closing
    served: dict[str, int] = field(default_factory=dict)             # file -> body bytes sent
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    auth_seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Authorization)
    ignore_range: bool = False                                       # answer 200 with the whole file
    down: bool = False                                               # hang up on every request (no network)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._by_sha: dict[str, tuple[str, bytes]] = {}     # sha256 -> (file name, bytes): the CDN's store
        self._generation = 0
        self.heads: dict[str, str] = {repo: REVISION for repo in self.repos}
        self.commits: dict[str, dict[str, dict[str, bytes]]] = {
            repo: {REVISION: files} for repo, files in self.repos.items()}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                hub._handle(self, head=False)

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._threads = []
        for server in (self.server, self.cdn):
            server.daemon_threads = True
            t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self.cdn.server_address[1]}"

    def close(self) -> None:
        for server in (self.server, self.cdn):
            server.shutdown()
            server.server_close()

    def total_served(self, names: set[str] | None = None) -> int:
        with self._lock:
            return sum(v for k, v in self.served.items() if names is None or k in names)

    def reset_counts(self) -> None:
        """Start counting afresh; connections still open from before no longer count."""
        with self._lock:
            self._generation += 1
            self.served.clear()
            self.requests.clear()
            self.auth_seen.clear()

    # ---- history -------------------------------------------------------------------------
    def head(self, repo: str) -> str:
        return self.heads.get(repo, REVISION)

    def publish(self, repo: str, files: dict[str, bytes]) -> str:
        """A new commit becomes the head of `repo`; the previous ones still resolve. Returns its sha."""
        sha = _commit_sha(files)
        with self._lock:
            self.commits.setdefault(repo, {})[sha] = files
            self.heads[repo] = sha
            self.repos[repo] = files
        return sha

    def drop_commit(self, repo: str, sha: str) -> None:
        """History rewritten: `sha` no longer exists (resolving it answers 404 RevisionNotFound)."""
        with self._lock:
            self.commits.get(repo, {}).pop(sha, None)

    def _files_at(self, repo: str, revision: str | None) -> dict[str, bytes] | None:
        if repo not in self.repos:
            return None
        if revision in (None, "main", self.head(repo)):
            return self.repos[repo]
        return self.commits.get(repo, {}).get(revision)

    # ---- routes ----------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        if self.down:
            h.close_connection = True
            return
        method = "HEAD" if head else "GET"
        parsed = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(parsed.path)
        on_cdn = h.server is self.cdn
        with self._lock:
            self.requests.append((method, path, h.headers.get("Range")))
            self.auth_seen.append((method, path, h.headers.get("Authorization")))
        if on_cdn:
            m = re.fullmatch(r"/cdn/([0-9a-f]{64})", path)
            if m and m.group(1) in self._by_sha:
                name, data = self._by_sha[m.group(1)]
                return self._send_file(h, name, data, etag=m.group(1), head=head)
            return self._error(h, 404, None, head=head)
        if self.required_token is not None and h.headers.get("Authorization") != f"Bearer {self.required_token}":
            return self._error(h, 401, None, head=head)
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if m:
            return self._model_info(h, m.group(1), m.group(2))
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            repo, rev, name = m.groups()
            if repo in self.gated:
                return self._error(h, 403, "GatedRepo", head=head)
            if repo not in self.repos:
                return self._error(h, 404, "RepoNotFound", head=head)
            files = self._files_at(repo, rev)
            if files is None:
                return self._error(h, 404, "RevisionNotFound", head=head)
            data = files.get(name)
            if data is None:
                return self._error(h, 404, "EntryNotFound", head=head)
            commit = self.head(repo) if rev in ("main", self.head(repo)) else rev
            if name.endswith(LFS_SUFFIXES):
                sha = hashlib.sha256(data).hexdigest()
                with self._lock:
                    self._by_sha[sha] = (name, data)
                h.send_response(302)
                h.send_header("Location", f"{self.cdn_url}/cdn/{sha}")
                h.send_header("X-Repo-Commit", commit)
                h.send_header("X-Linked-Etag", f'"{sha}"')
                h.send_header("X-Linked-Size", str(len(data)))
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            return self._send_file(h, name, data, etag=git_blob_sha1(data), head=head, commit=commit)
        self._error(h, 404, None, head=head)

    def _error(self, h: BaseHTTPRequestHandler, code: int, error_code: str | None, *, head: bool = False) -> None:
        body = json.dumps({"error": error_code or "not found"}).encode()
        h.send_response(code)
        if error_code:
            h.send_header("X-Error-Code", error_code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _model_info(self, h: BaseHTTPRequestHandler, repo: str, revision: str | None) -> None:
        if repo in self.gated:
            return self._error(h, 401, "GatedRepo")
        if repo not in self.repos:
            return self._error(h, 404, "RepoNotFound")
        files = self._files_at(repo, revision)
        if files is None:
            return self._error(h, 404, "RevisionNotFound")
        siblings = []
        for name, data in sorted(files.items()):
            sib = {"rfilename": name, "size": len(data), "blobId": git_blob_sha1(data)}
            if name.endswith(LFS_SUFFIXES):
                sib["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
            siblings.append(sib)
        sha = self.head(repo) if revision in (None, "main") else revision
        body = json.dumps({"id": repo, "modelId": repo, "sha": sha, "private": False, "gated": False,
                           "siblings": siblings}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _send_file(self, h: BaseHTTPRequestHandler, name: str, data: bytes, *, etag: str, head: bool,
                   commit: str | None = None) -> None:
        with self._lock:
            if not head and name in self.corrupt_once | self.corrupt_always:
                self.corrupt_once.discard(name)
                data = bytes([data[0] ^ 0xFF]) + data[1:-1] + bytes([data[-1] ^ 0xFF])
            drop_after = None if head else self.drop_once_after.pop(name, None)
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
        h.send_header("ETag", f'"{etag}"')
        if commit is not None:
            h.send_header("X-Repo-Commit", commit)
        h.end_headers()
        if head:
            return
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
