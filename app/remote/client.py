"""HTTP to a server: the client (TLS, timeouts, no proxies from the environment), the list of its
models ("Test connection"), and every failure translated into a RemoteError a user can act on.

httpx2 (already bundled: huggingface_hub uses it) carries the requests; its EventSource reads
the server-sent events of a streamed reply. The environment's proxy variables are ignored
(`trust_env=False`): a proxy would carry even a loopback request off the machine in offline mode.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from app.remote.errors import (AuthFailed, CertificateNotTrusted, ContextTooLong, ModelNotFound, RemoteError,
                               ServerFailed, Unreachable)
from app.remote.policy import ensure_allowed
from app.remote.stream import ServerReportedError, error_in
from app.remote.target import host_label
from app.remote.tls import is_certificate_error, ssl_context

log = logging.getLogger(__name__)

USER_AGENT = "Lantern"
CONNECT_TIMEOUT_S = 10.0
# A long prompt on a big model may take minutes before its first token; Stop does not wait for this.
READ_TIMEOUT_S = 600.0
LIST_TIMEOUT_S = 15.0

_CONTEXT_WORDS = re.compile(r"context[ _-]?(length|size|window|limit)|maximum context|n_ctx|too many tokens|"
                            r"context_length_exceeded|exceed_context|prompt is too long|too long", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ServerModel:
    """One model a server lists (GET /models)."""

    id: str
    max_context: int = 0             # vLLM's max_model_len (0: not said)
    owned_by: str = ""


def make_client(trusted_cert_pem: str | None, *, read_timeout: float = READ_TIMEOUT_S) -> httpx2.Client:
    return httpx2.Client(
        verify=ssl_context(trusted_cert_pem),
        timeout=httpx2.Timeout(connect=CONNECT_TIMEOUT_S, read=read_timeout, write=30.0, pool=CONNECT_TIMEOUT_S),
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def join(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + path.lstrip("/")


# ---- errors ---------------------------------------------------------------------------------------

def _server_text(body: str) -> tuple[str, str, str]:
    """(message, code, type) of an error body; the raw text (trimmed) when it is not JSON."""
    try:
        payload = json.loads(body)
    except (ValueError, TypeError):
        return body.strip()[:500], "", ""
    err = error_in(payload)
    if err is None:
        detail = payload.get("detail") if isinstance(payload, Mapping) else None   # FastAPI's shape
        return (str(detail) if detail else body.strip()[:500]), "", ""
    return err.message, err.code, err.kind


def error_for_status(status: int, body: str, base_url: str, model: str | None = None,
                     key_sent: bool = False) -> RemoteError:
    """An HTTP error answer, in Lantern's words (with the server's own message after them)."""
    host = host_label(base_url)
    message, code, kind = _server_text(body)
    said = f" The server said: {message}" if message else ""
    if status in (401, 403):
        if key_sent:
            text = f"{host} refused the API key ({status}). Check the key in the server's settings (Models → servers)."
        else:
            text = f"{host} needs an API key ({status}). Add one in the server's settings (Models → servers)."
        return AuthFailed(text + said, server_message=message, status=status)
    if status == 404 or code == "model_not_found":
        if model and (code == "model_not_found" or "model" in message.lower()):
            return ModelNotFound(f"{host} does not serve a model named “{model}”. Test the connection to see the "
                                 f"models it offers.{said}", server_message=message, status=status)
        return ModelNotFound(f"{host} has no OpenAI-compatible API at {base_url} ({status}). Check the address: "
                             f"it usually ends in /v1.{said}", server_message=message, status=status)
    if status in (400, 413, 422) and _CONTEXT_WORDS.search(f"{message} {code} {kind}"):
        return ContextTooLong(f"The conversation is too long for the model's context on {host}. Start a new chat "
                              f"or delete earlier messages.{said}", server_message=message, status=status)
    if status == 429:
        return ServerFailed(f"{host} is busy or limits how often it may be used (429). Try again in a moment.{said}",
                            server_message=message, status=status)
    if status >= 500:
        return ServerFailed(f"{host} failed while answering ({status}).{said}", server_message=message, status=status)
    return ServerFailed(f"{host} did not accept the request ({status}).{said}", server_message=message, status=status)


def error_for_reported(err: ServerReportedError, base_url: str, model: str | None) -> RemoteError:
    """An error object sent in place of (or in the middle of) a streamed reply."""
    status = err.status if err.status and err.status >= 400 else 500
    body = json.dumps({"error": {"message": err.message, "code": err.code, "type": err.kind}})
    return error_for_status(status, body, base_url, model)


def error_for_exception(exc: BaseException, base_url: str, *, mid_reply: bool = False) -> RemoteError:
    """A failed connection, in Lantern's words."""
    if isinstance(exc, RemoteError):
        return exc
    host = host_label(base_url)
    if is_certificate_error(exc):
        return CertificateNotTrusted(
            f"The certificate of {host} could not be verified ({_reason(exc)}). If this server uses a "
            "self-signed certificate, compare its fingerprint with the server's and trust it for this server "
            "(Models → On servers you run → Edit).")
    if mid_reply:
        return Unreachable(f"The connection to {host} was lost in the middle of the reply ({_reason(exc)}). "
                           "What arrived is kept; regenerate to try again.")
    if isinstance(exc, httpx2.TimeoutException):
        return Unreachable(f"{host} did not answer in time ({_reason(exc)}). Check that the server is running.")
    if isinstance(exc, (httpx2.TransportError, OSError)):
        return Unreachable(f"Cannot reach {host} ({_reason(exc)}). Check that the server is running and that the "
                           "address is right.")
    return ServerFailed(f"Talking to {host} failed: {type(exc).__name__}: {exc}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


# ---- the list of models -------------------------------------------------------------------------

def parse_models(payload: Any) -> list[ServerModel]:
    """`data[]` of GET /models (OpenAI's shape; vLLM adds max_model_len, llama-server `meta`)."""
    data = payload.get("data") if isinstance(payload, Mapping) else None
    if not isinstance(data, list):
        data = payload.get("models") if isinstance(payload, Mapping) else None   # some servers' own shape
    models: list[ServerModel] = []
    for item in data or ():
        if not isinstance(item, Mapping):
            continue
        model_id = item.get("id") or item.get("model") or item.get("name")
        if not isinstance(model_id, str) or not model_id:
            continue
        context = item.get("max_model_len")
        meta = item.get("meta")
        if not isinstance(context, int) and isinstance(meta, Mapping):
            context = meta.get("n_ctx") or meta.get("n_ctx_train")
        models.append(ServerModel(model_id, context if isinstance(context, int) and context > 0 else 0,
                                  str(item.get("owned_by") or "")))
    return models


def list_models(base_url: str, api_key: str | None, trusted_cert_pem: str | None = None) -> list[ServerModel]:
    """Ask the server which models it serves (the "Test connection" button). Raises RemoteError."""
    ensure_allowed(base_url)
    try:
        with make_client(trusted_cert_pem, read_timeout=LIST_TIMEOUT_S) as client:
            response = client.get(join(base_url, "models"), headers=auth_headers(api_key))
    except httpx2.HTTPError as exc:
        raise error_for_exception(exc, base_url) from exc
    except OSError as exc:
        raise error_for_exception(exc, base_url) from exc
    if response.status_code >= 400:
        raise error_for_status(response.status_code, response.text, base_url, key_sent=bool(api_key))
    try:
        payload = response.json()
    except ValueError as exc:
        raise ModelNotFound(f"{host_label(base_url)} answered, but not with an OpenAI-compatible model list. "
                            "Check the address: it usually ends in /v1.") from exc
    models = parse_models(payload)
    log.info("%s lists %d model(s)", host_label(base_url), len(models))
    return models
