"""The window's hook for remote models, kept here so main_window.py calls one function: the Models
dialog's servers section. (Reload and the autoload at start are the ModelController's and the
Application's: `ModelController.reload`, `app.remote.registry.target_for`.)"""

from __future__ import annotations

import logging
from typing import Any

from app.remote.registry import default_registry

log = logging.getLogger(__name__)


def add_servers_section(window: Any, dialog: Any, layout: Any) -> Any:
    """Put the “On servers you run” section into the Models dialog; its connections are made in
    app/wiring.py (`connect_servers_section`)."""
    from app.widgets.remote_models import ServersSection
    from app.wiring import connect_servers_section

    section = ServersSection(default_registry(), dialog)
    model = window.controller.model
    section.set_current(model.path if model is not None else None)
    connect_servers_section(window, section, dialog)
    layout.addWidget(section)
    window.servers_section = section
    return section
