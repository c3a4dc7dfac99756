"""A loopback HTTP server that replays recorded Chat Completions streams (tests only).

Each model name it lists maps to one `Recording`: the bytes a real server sent for one reply (see
recorded_streams.py for the vLLM- and llama-server-shaped ones), replayed as HTTP/1.1 chunks the
way uvicorn (vLLM, SGLang) and llama-server send them. It records every request it gets, can ask
for an API key, and notices when a client goes away in the middle of a reply.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recording:
    pieces: tuple[str, ...]                 # body text; each piece is sent as one HTTP chunk
    status: int = 200
    content_type: str = "text/event-stream"
    drop: bool = False                      # close the connection after the pieces, without ending the body
    delay_s: float = 0.0                    # pause before each piece
    max_model_len: int | None = None        # what GET /models says about the model (vLLM's field)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class RecordedServer:
    recordings: dict[str, Recording]
    api_key: str | None = None
    requests: list[Received] = field(default_factory=list)
    client_left: threading.Event = field(default_factory=threading.Event)   # a write failed mid-reply
    replies_started: threading.Event = field(default_factory=threading.Event)
    auth_error_body: str = '{"error":"Unauthorized"}'                      # vLLM's answer to a wrong key
    models_status: int = 200
    tls: tuple[str, str] | None = None      # (certificate file, key file): serve https
    models_gate: threading.Event | None = None   # when given, GET /models waits (up to 10 s) until it is set

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _body(self) -> dict[str, Any] | None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                return json.loads(raw) if raw else None

            def _send(self, status: int, text: str, content_type: str = "application/json") -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if owner.api_key is None or self.headers.get("Authorization") == f"Bearer {owner.api_key}":
                    return True
                self._send(401, owner.auth_error_body)
                return False

            def do_GET(self) -> None:  # noqa: N802
                owner.requests.append(Received("GET", self.path, dict(self.headers), None))
                if not self._authorized():
                    return
                if self.path.rstrip("/") != "/v1/models":
                    self._send(404, '{"detail":"Not Found"}')
                    return
                if owner.models_gate is not None:
                    owner.models_gate.wait(10)
                data = []
                for name, rec in owner.recordings.items():
                    entry: dict[str, Any] = {"id": name, "object": "model", "created": 1758892000, "owned_by": "vllm"}
                    if rec.max_model_len:
                        entry["max_model_len"] = rec.max_model_len
                    data.append(entry)
                self._send(owner.models_status, json.dumps({"object": "list", "data": data}))

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                owner.requests.append(Received("POST", self.path, dict(self.headers), body))
                if not self._authorized():
                    return
                if self.path != "/v1/chat/completions":
                    self._send(404, '{"detail":"Not Found"}')
                    return
                model = (body or {}).get("model")
                rec = owner.recordings.get(model)
                if rec is None:
                    self._send(404, json.dumps({"object": "error", "message": f"The model `{model}` does not exist.",
                                                "type": "NotFoundError", "param": None, "code": 404}))
                    return
                if rec.status != 200 or rec.content_type != "text/event-stream":
                    self._send(rec.status, "".join(rec.pieces), rec.content_type)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                owner.replies_started.set()
                try:
                    for piece in rec.pieces:
                        if rec.delay_s:
                            time.sleep(rec.delay_s)
                        data = piece.encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    if rec.drop:
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    owner.client_left.set()
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        if self.tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="recorded-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1"

    def chat_bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.method == "POST" and r.body is not None]

    def __enter__(self) -> "RecordedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
