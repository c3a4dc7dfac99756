"""The words the window shows about remote models (Qt-free, so tests can read them directly)."""

from __future__ import annotations

from app.remote.policy import is_loopback_host
from engine.types import ModelInfo


def badge_text(host: str) -> str:
    return f"on {host}"


def reply_origin_tooltip(model: str | None, host: str) -> str:
    who = model or "the model"
    return f"Written by {who} on the server {host}. This chat's messages were sent there."


def status_texts(info: ModelInfo) -> tuple[str, str, str]:
    """(model label, where label, tooltip) for the status bar while a remote model is in use."""
    host = info.remote_host or "?"
    if is_loopback_host(host.rsplit(":", 1)[0].strip("[]")):   # another program on this computer
        tip = (f"{info.name} runs in another program on this computer ({host}, {info.backend}).\nYour messages, "
               "the instructions and this chat's history are sent to it for every reply; they stay on this computer.")
        return f"{info.name} {badge_text(host)}", "server on this computer", tip
    tip = (f"{info.name} runs on the server {host} ({info.backend}).\nYour messages, the instructions and this "
           "chat's history are sent to that server for every reply; nothing runs on this computer.")
    return f"{info.name} {badge_text(host)}", "remote: messages leave this computer", tip


def plain_http_warning(host: str) -> str:
    return (f"This address uses plain HTTP: messages and the API key travel unencrypted to {host}. "
            "Use https:// unless the network between you and the server is your own.")


def offline_note() -> str:
    return "Offline mode is on: only servers on this computer can be used."
