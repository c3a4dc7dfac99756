"""Settings: declared defaults and descriptions, JSON round trip, bad values fall back, the dialog."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from app.settings import Settings, SettingsStore, describe
from app.widgets.settings_dialog import SettingsDialog

REQUIRED = {"instructions", "reasoning_effort", "temperature", "top_p", "max_tokens", "context_length", "device",
            "cpu_threads", "theme", "font_size", "show_reasoning"}


def test_every_option_has_a_default_and_a_one_line_description() -> None:
    names = {f.name for f in dataclasses.fields(Settings)}
    assert REQUIRED <= names
    for name in names:
        meta = describe(name)
        assert meta["desc"] and "\n" not in meta["desc"] and meta["desc"].endswith(".")
        assert meta["default"] == getattr(Settings(), name)


def test_saved_as_json_and_loaded_back(tmp_path: Path, qtbot) -> None:  # noqa: ANN001
    path = tmp_path / "cfg" / "settings.json"
    store = SettingsStore(path)
    seen: list[str] = []
    store.changed.connect(seen.append)
    store.update(temperature=0.7, theme="dark", instructions="Be brief.")
    store.update(temperature=0.7)  # no change, no signal
    assert sorted(seen) == ["instructions", "temperature", "theme"]
    store.flush()                  # written on a thread of its own
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1 and data["settings"]["theme"] == "dark"
    again = SettingsStore(path).settings
    assert again.temperature == 0.7 and again.theme == "dark" and again.instructions == "Be brief."
    assert again.generation_params().temperature == 0.7


def test_bad_or_unknown_values_fall_back_to_defaults(tmp_path: Path, qtbot) -> None:  # noqa: ANN001
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 1, "settings": {
        "theme": "purple", "temperature": "hot", "top_p": 5.0, "font_size": 14, "show_reasoning": 1,
        "unknown_key": 3, "max_tokens": 2048.5}}))
    s = SettingsStore(path).settings
    assert (s.theme, s.temperature, s.top_p, s.show_reasoning, s.max_tokens) == ("system", 1.0, 1.0, True, 4096)
    assert s.font_size == 14
    path.write_text("{not json")
    assert SettingsStore(path).settings == Settings()


def test_dialog_edits_a_copy_and_restores_defaults(qtbot) -> None:  # noqa: ANN001
    dialog = SettingsDialog(Settings(temperature=0.3, last_model="/m"))
    qtbot.addWidget(dialog)
    assert "last_model" not in dialog.editors and "models_dir" not in dialog.editors
    dialog.editors["reasoning_effort"].setCurrentText("high")
    dialog.editors["instructions"].setPlainText("Answer in French.")
    dialog.editors["show_reasoning"].setChecked(False)
    result = dialog.result_settings()
    assert (result.reasoning_effort, result.instructions, result.show_reasoning, result.temperature,
            result.last_model) == ("high", "Answer in French.", False, 0.3, "/m")
    dialog.restore_defaults()
    assert dialog.result_settings() == Settings(last_model="/m")
    for name, editor in dialog.editors.items():
        assert editor.accessibleName() and editor.toolTip() == describe(name)["desc"]


def test_presets_are_saved_and_a_failed_save_does_not_break_the_app(tmp_path: Path, qtbot) -> None:  # noqa: ANN001
    path = tmp_path / "settings.json"
    store = SettingsStore(path)
    store.update(instruction_presets=(("Brief", "Answer briefly."), ("French", "Réponds en français.")))
    store.flush()
    assert SettingsStore(path).settings.instruction_presets == (("Brief", "Answer briefly."),
                                                                ("French", "Réponds en français."))
    blocked = SettingsStore(tmp_path / "file" / "settings.json")
    (tmp_path / "file").write_text("not a folder")
    blocked.update(theme="dark")          # cannot be written: logged, the setting still applies
    blocked.flush()
    assert blocked.settings.theme == "dark"
