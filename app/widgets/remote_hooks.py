"""The window's hooks for remote models, kept here so main_window.py and application.py call one
function each: the Models dialog's servers section, Reload, and loading the last model at start."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from app.remote.registry import ServerRegistry, default_registry
from app.remote.target import RemoteTarget, parse_remote_model_path

log = logging.getLogger(__name__)


def target_for(path: Path | str, registry: ServerRegistry | None = None) -> RemoteTarget | None:
    """The RemoteTarget a pseudo path names, if its server is still registered."""
    parsed = parse_remote_model_path(path)
    if parsed is None:
        return None
    server = (registry or default_registry()).get(parsed[0])
    return server.target(parsed[1]) if server is not None else None


def add_servers_section(window: Any, dialog: Any, layout: Any) -> Any:
    """Put the “On servers you run” section into the Models dialog, wired to the window."""
    from app.widgets.remote_models import ServersSection

    section = ServersSection(default_registry(), dialog)
    model = window.controller.model
    section.set_current(model.path if model is not None else None)

    def use(target: RemoteTarget) -> None:
        window.controller.load_remote(target)
        dialog.accept()

    section.use_requested.connect(use)
    section.status_message.connect(lambda text: window.statusBar().showMessage(text, 10000))
    layout.addWidget(section)
    window.servers_section = section
    return section


def reload_remote(window: Any, path: Path) -> bool:
    """Reload for a remote model: connect again. False when `path` is a model folder."""
    if parse_remote_model_path(path) is None:
        return False
    target = target_for(path)
    if target is None:
        window.on_error("That server is no longer in the list. Add it again from Models (Ctrl+M).", "user")
    else:
        window.controller.load_remote(target)
    return True


def autoload_remote(window: Any, last_model: str) -> bool:
    """At start: use the remote model used last, if its server is still there. True when `last_model`
    names a remote model (so it is not taken for a folder), whether or not it could be used."""
    if parse_remote_model_path(last_model) is None:
        return False
    target = target_for(last_model)
    if target is None:
        log.info("the last model was on a server that was removed: %s", last_model)
    else:
        log.info("using the last model again: %s on %s", target.model, target.host)
        window.controller.load_remote(target)
    return True
