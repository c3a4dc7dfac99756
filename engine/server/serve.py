"""`python -m engine serve`: the local API on a uvicorn server, headless or in a thread (the window).

    python -m engine serve --model DIR [--host 127.0.0.1] [--port 8177] [--api-key KEY]

Binds to 127.0.0.1 unless told otherwise; the API key is required on every request (one is
generated and printed when none is given). Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from engine.errors import EngineError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8177


def generate_api_key() -> str:
    return "lantern-" + secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class ServerError(EngineError):
    """The server could not start (port in use, address not available)."""


class ApiServer:
    """A uvicorn server for an ASGI app on (host, port); port 0 picks a free one."""

    def __init__(self, app: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        import uvicorn

        self.app = app
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            self._socket = socket.socket(info[0], socket.SOCK_STREAM)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind(info[4])
            self._socket.listen(64)
        except OSError as exc:
            raise ServerError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}. "
                              "Choose another port (--port) or stop the program using it.") from exc
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def run(self) -> None:
        """Serve in this thread until stop() (or Ctrl-C, in the main thread)."""
        self._server.run(sockets=[self._socket])

    def start(self) -> None:
        """Serve in a background thread; returns once it accepts connections."""
        self._thread = threading.Thread(target=self.run, name="lantern-api-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            raise ServerError("The API server did not start.")

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self._socket.close()
        except OSError:
            pass


def build(engine: Any, *, api_key: str, store_path: Path | None, sessions: int = 1, max_queue: int = 8,
          max_body_bytes: int | None = None) -> tuple[Any, Any, Any]:
    """(ASGI app, host, store) serving `engine` on a model thread of its own."""
    from engine.server.app import DEFAULT_MAX_BODY_BYTES, ServerConfig, create_app
    from engine.server.host import EngineHost
    from engine.server.store import ResponseStore

    host = EngineHost(engine, sessions=sessions, max_queue=max_queue)
    store = ResponseStore(store_path)
    config = ServerConfig(api_key=api_key, store=store, max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES)
    return create_app(host, config), host, store


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.api import Engine
    from engine.server.store import default_store_path

    api_key = args.api_key or os.environ.get("LANTERN_API_KEY") or generate_api_key()
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}: other devices on the network can reach this server "
              "(they still need the API key).", file=sys.stderr)
    store_path = None if args.no_store else (args.store or default_store_path())

    def progress(message: str, fraction: float) -> None:
        log.info("%s (%.0f%%)", message, fraction * 100)

    engine = Engine.load(args.model, device=args.device, max_context=args.context, progress=progress,
                         backend=args.backend, experts_on_cpu=args.experts_on_cpu)
    app, host, store = build(engine, api_key=api_key, store_path=store_path, sessions=args.sessions,
                             max_queue=args.max_queue)
    server = ApiServer(app, args.host, args.port)
    print(f"Serving {engine.info.name} at {server.url} (context {engine.info.max_context:,} tokens, "
          f"{engine.info.device}/{engine.info.backend})", file=sys.stderr)
    if not args.api_key:
        print(f"API key: {api_key}", file=sys.stderr)
    print(f"Stored responses: {store_path or 'in memory only'}", file=sys.stderr)
    try:
        server.run()
    finally:
        host.close()
        store.close()
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve an OpenAI-compatible API (Chat Completions, Responses) on this machine")
    p.add_argument("--model", required=True, type=Path, help="HF repo root or its original/ folder")
    p.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--api-key", default=None, help="bearer token clients must send (default: $LANTERN_API_KEY, "
                                                   "else a new one, printed)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--backend", default=None,
                   help="engine.backends name, e.g. cpu-avx2, cuda-triton, mps (default: $LANTERN_BACKEND, else auto)")
    p.add_argument("--experts-on-cpu", type=int, default=None,
                   help="on a GPU: layers whose experts run on the CPU (default: as free memory requires)")
    p.add_argument("--context", type=int, default=8192, help="context length in tokens (default: 8192)")
    p.add_argument("--sessions", type=int, default=2,
                   help="conversations kept warm for prefix reuse; each holds a KV cache (default: 2)")
    p.add_argument("--max-queue", type=int, default=8, help="requests that may wait for the model (default: 8)")
    p.add_argument("--store", type=Path, default=None, help="SQLite file of stored responses (previous_response_id)")
    p.add_argument("--no-store", action="store_true", help="keep stored responses in memory only")
    p.set_defaults(func=cmd_serve)
