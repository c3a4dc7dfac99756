"""User settings: one frozen dataclass whose fields declare default, description and allowed values,
and a SettingsStore that saves them as JSON in the user config folder and announces changes.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.jsonfile import read_json, write_json_atomic
from engine.types import DEFAULT_REASONING_EFFORT, GenerationParams

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


SECTIONS = ("Chat", "Model", "Appearance", "Privacy", "Local API server")
"""The Settings dialog's sections, in order (another part of the app may add its own section)."""

Presets = tuple[tuple[str, str], ...]
"""Saved instructions: (name, text) pairs, picked from the composer's Instructions… button."""


def _opt(default: Any, desc: str, *, choices: tuple[Any, ...] | None = None,
         minimum: float | None = None, maximum: float | None = None, label: str = "",
         section: str = "Chat") -> Any:
    return field(default=default, metadata={"desc": desc, "choices": choices, "min": minimum,
                                            "max": maximum, "label": label, "section": section})


@dataclass(frozen=True)
class Settings:
    """Every user-visible option. Change with `dataclasses.replace`; persist with SettingsStore."""

    instructions: str = _opt("", "Default instructions sent to the model (the developer message); a chat can "
                                 "have its own (Instructions… beside the message box).", label="Instructions")
    reasoning_effort: str = _opt(DEFAULT_REASONING_EFFORT, "Default for how long the model reasons before "
                                 "answering; a chat can have its own (the selector beside Send).",
                                 choices=("low", "medium", "high"), label="Reasoning effort")
    temperature: float = _opt(1.0, "Randomness of sampling; 0 always picks the likeliest token (1.0 recommended).",
                              minimum=0.0, maximum=2.0, label="Temperature")
    top_p: float = _opt(1.0, "Sample only from the smallest set of tokens holding this probability (1.0 = all).",
                        minimum=0.01, maximum=1.0, label="Top-p")
    max_tokens: int = _opt(4096, "Longest reply in tokens, reasoning included.", minimum=16, maximum=131072,
                           label="Max reply tokens")
    context_length: int = _opt(8192, "Tokens the model can see at once; more needs more memory (reload to apply).",
                               minimum=512, maximum=131072, label="Context length", section="Model")
    device: str = _opt("auto", "Where the model runs; auto picks the best available (reload to apply).",
                       choices=("auto", "cuda", "mps", "cpu"), label="Device", section="Model")
    cpu_threads: int = _opt(0, "CPU threads for the model; 0 lets the runtime decide (reload to apply).",
                            minimum=0, maximum=256, label="CPU threads", section="Model")
    theme: str = _opt("system", "Light, dark, or follow the operating system.",
                      choices=("system", "light", "dark"), label="Theme", section="Appearance")
    font_size: int = _opt(11, "Text size of the chat, in points.", minimum=7, maximum=32, label="Font size", section="Appearance")
    show_reasoning: bool = _opt(True, "Show the model's reasoning (its unfiltered chain of thought) in a "
                                      "collapsible block.", label="Show reasoning", section="Appearance")
    offline: bool = _opt(False, "Offline mode: open no network connection at all (model downloads are off).",
                         label="Offline mode", section="Privacy")
    models_dir: str = _opt("", "Folder where models are kept; empty uses the default in the data folder.",
                           label="Models folder", section="Model")
    last_model: str = _opt("", "The model loaded last; it is loaded again at start.", label="Last model", section="Model")
    instruction_presets: Presets = _opt((), "Saved instructions to pick for a chat.", label="Instruction presets")
    # The local OpenAI-compatible API (app/api_server.py, engine/server/).
    api_server: bool = _opt(False, "Serve the loaded model to programs on this computer through an "
                                   "OpenAI-compatible API (Chat Completions, Responses). Off by default.",
                            label="Local API server", section="Local API server")
    api_server_lan: bool = _opt(False, "Allow other devices on my network. Warning: anyone on the network who "
                                       "has the API key can then use the model on this computer.",
                                label="Allow other devices on my network", section="Local API server")
    api_server_port: int = _opt(8177, "Port of the local API server.", minimum=1024, maximum=65535,
                                label="API server port", section="Local API server")
    api_key: str = _opt("", "The key programs must send (Authorization: Bearer <key>); select it to copy it. "
                            "Made when the server first starts; clear it to get a new one.", label="API key",
                        section="Local API server")

    def generation_params(self, today: datetime.date | None = None, *,
                          reasoning_effort: str | None = None) -> GenerationParams:
        """Sampling for the next reply (`reasoning_effort`: a chat's own, else the default); the system
        message carries today's date, as gpt-oss expects."""
        return GenerationParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                                reasoning_effort=(reasoning_effort or self.reasoning_effort),  # type: ignore[arg-type]
                                current_date=(today or datetime.date.today()).isoformat())


def describe(name: str) -> dict[str, Any]:
    """The declared metadata of one option: desc, choices, min, max, label, default."""
    f = {f.name: f for f in dataclasses.fields(Settings)}[name]
    return {**f.metadata, "default": f.default}


def _coerce(name: str, value: Any) -> Any:
    """Check one loaded value against its declaration; raise ValueError if it does not fit."""
    meta = describe(name)
    default = meta["default"]
    if name == "instruction_presets":
        if not isinstance(value, (list, tuple)):
            raise ValueError("expected a list of [name, text]")
        presets = []
        for item in value:
            if (not isinstance(item, (list, tuple)) or len(item) != 2
                    or not all(isinstance(x, str) for x in item) or not item[0].strip()):
                raise ValueError("expected [name, text] pairs")
            presets.append((item[0].strip(), item[1]))
        return tuple(presets)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError("expected true/false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("expected a number")
        value = float(value)
    elif isinstance(default, str) and not isinstance(value, str):
        raise ValueError("expected text")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ValueError(f"expected one of {meta['choices']}")
    if meta["min"] is not None and value < meta["min"]:
        raise ValueError(f"below {meta['min']}")
    if meta["max"] is not None and value > meta["max"]:
        raise ValueError(f"above {meta['max']}")
    return value


def settings_from_dict(data: dict[str, Any]) -> Settings:
    """Known keys that fit their declaration are kept; anything else falls back to the default."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        if f.name in data:
            try:
                values[f.name] = _coerce(f.name, data[f.name])
            except ValueError as error:
                log.warning("setting %s=%r ignored (%s); using the default", f.name, data[f.name], error)
    return Settings(**values)


class SettingsStore(QObject):
    """Holds the current Settings, saves them to `<config dir>/settings.json`, emits changed(key)."""

    changed = Signal(str)

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._writer: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._settings = self._load()

    @property
    def settings(self) -> Settings:
        return self._settings

    def _load(self) -> Settings:
        data = read_json(self.path)   # None if missing or unreadable (logged): the defaults
        if not isinstance(data, dict):
            return Settings()
        return settings_from_dict(data.get("settings", {}) if "settings" in data else data)

    def update(self, **changes: Any) -> None:
        """Apply, save, then emit changed(key) for each key whose value really changed."""
        new = dataclasses.replace(self._settings, **changes)
        old, self._settings = self._settings, new
        keys = [f.name for f in dataclasses.fields(Settings) if getattr(old, f.name) != getattr(new, f.name)]
        if keys:
            self.save()
        for key in keys:
            self.changed.emit(key)

    def replace(self, settings: Settings) -> None:
        self.update(**dataclasses.asdict(settings))

    def save(self) -> None:
        """Write atomically (temp file + fsync + rename) so a crash never leaves half a file. The write
        runs on a thread of its own (an fsync can take long on a slow disk), in order; `flush()` waits."""
        data = {"schema_version": SCHEMA_VERSION, "settings": dataclasses.asdict(self._settings)}
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="settings-save")
        self._pending = self._writer.submit(self._write, data)

    def _write(self, data: dict[str, Any]) -> None:
        try:
            write_json_atomic(self.path, data, indent=2)
        except OSError as error:   # a read-only or full disk: the settings still apply for this run
            log.warning("could not save the settings to %s: %s", self.path, error)

    def flush(self) -> None:
        """Wait until the last change is on disk."""
        pending = self._pending
        if pending is not None:
            pending.result()
