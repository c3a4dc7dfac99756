"""The parts of a build that Lantern imports only when a user reaches them, checked by `--self-test`.

PyInstaller follows static imports; what a reply, a setting or a tool loads later (ziamath and
Qt's SVG renderer for math, uvicorn and Starlette for the local API, the documents' libraries and the browser index, the
python tool's kernel script and sandbox, keyring's OS backends) would only fail on a user's
machine. Each check prints one `<step> ... (<ms> ms)` line, as the self-test's other steps do.
Runs on a thread of its own (the window keeps its event loop); the API check talks to the window's
own Local API server on loopback, which serves the model the self-test loaded.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

Report = Callable[..., None]   # report(step, detail, ok=..., ms=...)

FEATURE_STEPS = ("math-drawn", "api-models", "api-chat", "documents-searched", "python-ran", "keyring-backend")


def _timed(report: Report, step: str, check: Callable[[], tuple[bool, str]]) -> None:
    started = time.perf_counter()
    try:
        ok, detail = check()
    except Exception as error:  # noqa: BLE001 - any failure is this check's answer
        log.exception("self-test check %s failed", step)
        ok, detail = False, f"{type(error).__name__}: {error}"
    report(step, detail, ok=ok, ms=(time.perf_counter() - started) * 1000)


def check_math() -> tuple[bool, str]:
    from app.math_images import Formula, _draw

    url = _draw(Formula(r"\frac{a}{b} + \sqrt{x^2}", True, "#202020"))
    return bool(url and url.startswith("data:image/png;base64,")), f"png-chars={len(url or '')}"


def _request(url: str, key: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {key}",
                                                               "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:   # loopback only
        return json.loads(response.read())


def check_api_models(base_url: str, key: str) -> tuple[bool, str]:
    models = _request(f"{base_url}/models", key)
    ids = [m.get("id") for m in models.get("data", [])]
    return bool(ids), f"url={base_url} models={ids}"


def check_api_chat(base_url: str, key: str) -> tuple[bool, str]:
    model = _request(f"{base_url}/models", key)["data"][0]["id"]
    reply = _request(f"{base_url}/chat/completions", key,
                     {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                      "temperature": 0})
    usage = reply.get("usage", {})
    ok = reply.get("object") == "chat.completion" and usage.get("completion_tokens", 0) > 0
    return ok, f"finish={reply['choices'][0].get('finish_reason')} completion-tokens={usage.get('completion_tokens')}"


def check_documents(folder: Path) -> tuple[bool, str]:
    from engine.tools.browser import LocalBrowser
    from engine.tools.extract import extract_document
    from engine.tools.index import DocumentIndex

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "garden.html").write_text("<html><body><h1>Garden</h1><p>Tomatoes need six hours of sun.</p>"
                                        "</body></html>", encoding="utf-8")
    (folder / "kitchen.md").write_text("# Kitchen\n\nBread rises in a warm place.\n", encoding="utf-8")
    with DocumentIndex(folder / "index.sqlite3") as index:
        for name in ("garden.html", "kitchen.md"):
            index.add(extract_document(folder / name), name=name)
        hits = index.search("tomatoes sun")
        page = LocalBrowser(index).call("search", json.dumps({"query": "tomatoes sun"}))
    import docx  # noqa: F401 - Word and PDF files: their libraries are in the build
    import pypdf  # noqa: F401

    best = hits[0].url.rsplit("/", 1)[-1] if hits else "none"
    ok = best == "garden.html" and "garden.html" in page
    return ok, f"best-hit={best} hits={len(hits)} page-chars={len(page)}"


def check_python(folder: Path) -> tuple[bool, str]:
    from engine.tools.python_sandbox import PythonSession, SandboxLimits
    from engine.tools.python_sandbox.isolation import detect_isolation

    isolation = detect_isolation()
    session = PythonSession(folder, limits=SandboxLimits(timeout_s=30), isolation=isolation)
    try:
        out = session.run("print(1 + 1)")
    finally:
        session.close()
    return out.strip().endswith("2"), f"isolation={isolation.kind} python={session.python} output={out.strip()!r}"


def check_keyring() -> tuple[bool, str]:
    import keyring

    backend = keyring.get_keyring()
    return True, f"backend={type(backend).__module__}.{type(backend).__name__}"


def run_feature_checks(report: Report, tmp: Path, api: tuple[str, str] | None) -> None:
    """Each check in turn; `api` is (base URL, key) of the window's running Local API server."""
    _timed(report, "math-drawn", check_math)
    if api is None:
        report("api-models", "the Local API server did not start", ok=False, ms=0)
    else:
        _timed(report, "api-models", lambda: check_api_models(api[0], api[1]))
        _timed(report, "api-chat", lambda: check_api_chat(*api))
    _timed(report, "documents-searched", lambda: check_documents(tmp / "documents"))
    if shutil.which("bwrap") is None:
        log.info("bubblewrap is not installed: the python check runs without a sandbox")
    _timed(report, "python-ran", lambda: check_python(tmp / "python"))
    _timed(report, "keyring-backend", check_keyring)
