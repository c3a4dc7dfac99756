"""The About dialog's license list: read from package metadata (never typed), complete, and shown."""

from __future__ import annotations

import json
import tomllib
from importlib.metadata import PathDistribution
from pathlib import Path

import pytest

from app.licenses import (Component, components, license_of, license_text_of, normalize, qt_source_note,
                          runtime_distributions, system_components)

ROOT = Path(__file__).resolve().parents[2]


def _runtime_requirements() -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    return {normalize(d.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip()) for d in deps}


@pytest.fixture(scope="module")
def listed() -> dict[str, Component]:
    return {normalize(c.name): c for c in components()}


def test_every_runtime_dependency_is_listed_and_no_test_tool(listed: dict[str, Component]) -> None:
    assert _runtime_requirements() <= set(listed)
    for dev_only in ("pytest", "pytest-qt", "transformers", "openai-harmony", "gpt-oss"):
        assert dev_only not in listed
    # Dependencies of dependencies come from their metadata too (torch -> filelock, huggingface-hub -> ...).
    assert "filelock" in listed and "typing-extensions" in listed


def test_the_licenses_the_issue_names(listed: dict[str, Component]) -> None:
    model = next(c for c in listed.values() if c.kind == "model")
    assert model.license == "Apache-2.0" and "gpt-oss-20b" in model.name and "never bundled" in model.note
    qt = listed["pyside6"]
    assert "LGPL-3.0" in qt.license
    assert "download.qt.io/official_releases/qt/" in qt.note and qt.version.split(".")[0] in qt.note
    assert "BSD" in listed["torch"].license
    own = listed["lantern"]
    assert own.license == "Apache-2.0" and "Apache License" in own.license_text
    assert listed["python"].license == "PSF-2.0" and listed["python"].kind == "runtime"


def test_closure_follows_requires_dist() -> None:
    names = {normalize(d.metadata["Name"]) for d in runtime_distributions()}
    assert {"lantern", "torch", "pyside6", "shiboken6"} <= names


def _fake_dist(tmp_path: Path, headers: str, files: dict[str, str] | None = None) -> PathDistribution:
    folder = tmp_path / "fake-1.0.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text("Metadata-Version: 2.4\nName: fake\nVersion: 1.0\n" + headers + "\n")
    for name, text in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return PathDistribution(folder)


def test_license_field_order(tmp_path: Path) -> None:
    assert license_of(_fake_dist(tmp_path / "a", "License-Expression: MIT\nLicense: BSD\n")) == "MIT"
    assert license_of(_fake_dist(tmp_path / "b", "License: BSD-3-Clause\n")) == "BSD-3-Clause"
    assert license_of(_fake_dist(tmp_path / "c", "Classifier: License :: OSI Approved :: MIT License\n")) \
        == "MIT License"
    full_text = "License: MIT License\n        \n        Copyright (c) 2022 Someone\n"
    assert license_of(_fake_dist(tmp_path / "d", full_text)) == "MIT License"
    assert license_of(_fake_dist(tmp_path / "e", "")) == "see its license file"


def test_license_text_comes_from_the_declared_files(tmp_path: Path) -> None:
    dist = _fake_dist(tmp_path, "License-File: LICENSE\nLicense-File: third_party/x/LICENSE\n",
                      {"licenses/LICENSE": "Own terms", "licenses/third_party/x/LICENSE": "Vendored terms"})
    text = license_text_of(dist)
    assert "Own terms" in text and "Vendored terms" not in text   # a wheel's own file, not 100 vendored ones


def test_system_libraries_of_a_build(tmp_path: Path) -> None:
    data = {"packages": [{"package": "libxcb-icccm4", "version": "0.4.1-1.1", "license": "MIT",
                          "libraries": ["libxcb-icccm.so.4"], "copyright": "/usr/share/doc/libxcb-icccm4/copyright",
                          "license_text": "Permission is hereby granted"}]}
    path = tmp_path / "system-libraries.json"
    path.write_text(json.dumps(data))
    [lib] = system_components(path)
    assert (lib.name, lib.license, lib.kind) == ("libxcb-icccm4", "MIT", "system")
    assert "libxcb-icccm.so.4" in lib.note and "Permission" in lib.license_text
    assert system_components(tmp_path / "absent.json") == []


def test_qt_source_note() -> None:
    assert "https://download.qt.io/official_releases/qt/6.12/6.12.0/src/" in qt_source_note("6.12.0")


def test_about_dialog_lists_them_and_shows_the_text(qtbot) -> None:  # noqa: ANN001
    from app.widgets.about_dialog import AboutDialog

    dialog = AboutDialog()
    qtbot.addWidget(dialog)
    assert dialog.table.topLevelItemCount() == len(dialog.components) > 20
    row = next(i for i in range(dialog.table.topLevelItemCount())
               if dialog.table.topLevelItem(i).text(0) == "PySide6")
    dialog.table.setCurrentItem(dialog.table.topLevelItem(row))
    shown = dialog.details.toPlainText()
    assert "LGPL-3.0" in shown and "download.qt.io" in shown


def test_licenses_command_prints_the_same_list() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "app", "--licenses"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)})
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert len(rows) == len(components())
    assert ["model", "gpt-oss-20b / gpt-oss-120b", "", "Apache-2.0"] in rows
