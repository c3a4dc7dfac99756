"""What Lantern carries and under which licenses, read from the installed packages' metadata.

Nothing here is a hand-typed list of packages: the Python packages are the runtime dependency
closure of the `lantern` distribution (its `Requires-Dist`, recursively), or, in a PyInstaller build,
exactly the package metadata the build copied in (the spec copies it for each package it bundled, see
packaging/lantern.spec). Each license comes from the package's own `License-Expression`, `License` or
license classifiers, and its text from the `License-File`s it ships.

A few things have no Python package metadata and are described here: the models (downloaded on request,
never bundled), the Python runtime itself, the Qt C++ libraries inside the PySide6 wheels (whose
LGPL asks that we say where their source is), and, in a build, the system libraries the spec copied in
(listed with their Debian package and license in `resources/system-libraries.json`, written at build
time from /usr/share/doc/<package>/copyright).
"""

from __future__ import annotations

import json
import logging
import platform
import re
import sys
from dataclasses import dataclass
from importlib.metadata import Distribution, PackageNotFoundError, distribution, distributions
from pathlib import Path

from app.paths import resource_path

log = logging.getLogger(__name__)

ROOT_DISTRIBUTION = "lantern"
MODEL_NAMES = ("gpt-oss-20b", "gpt-oss-120b")
MODEL_LICENSE = "Apache-2.0"        # as stated on the model cards (with OpenAI's gpt-oss usage policy)
SYSTEM_LIBRARIES_FILE = "system-libraries.json"
QT_DISTRIBUTIONS = ("pyside6", "pyside6-essentials", "pyside6-addons", "shiboken6")
_LICENSE_CLASSIFIER = "License :: "
_MAX_INLINE_LICENSE = 100           # a `License` field longer than this (or multi-line) is the license text


@dataclass(frozen=True, slots=True)
class Component:
    """One thing Lantern ships (or fetches for the user), with its license."""

    name: str
    version: str
    license: str                      # an SPDX expression where the metadata gives one
    url: str = ""
    note: str = ""                    # e.g. where the source of an LGPL library is
    kind: str = "python"              # python | runtime | model | system
    license_text: str = ""

    def row(self) -> tuple[str, str, str]:
        return self.name, self.version, self.license


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(dist: Distribution) -> list[str]:
    """Names of the packages `dist` needs at run time on this machine (no extras; markers evaluated)."""
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # pragma: no cover - packaging comes with huggingface_hub; be safe anyway
        return [m.group(0) for r in dist.requires or [] if "extra ==" not in r
                and (m := re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r))]
    names = []
    for raw in dist.requires or []:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            log.debug("unreadable requirement %r of %s", raw, dist.metadata["Name"])
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        names.append(req.name)
    return names


def runtime_distributions(root: str = ROOT_DISTRIBUTION) -> list[Distribution]:
    """`root` and everything it needs at run time, as installed here (missing ones are skipped)."""
    found: dict[str, Distribution] = {}
    todo = [root]
    while todo:
        name = normalize(todo.pop())
        if name in found:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            log.debug("%s is required but not installed", name)
            continue
        found[name] = dist
        todo.extend(_requirement_names(dist))
    return sorted(found.values(), key=lambda d: normalize(d.metadata["Name"]))


def bundled_distributions() -> list[Distribution]:
    """In a PyInstaller build: the packages whose metadata the build copied in. Else the runtime closure."""
    if not getattr(sys, "frozen", False):
        return runtime_distributions()
    unique: dict[str, Distribution] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            unique.setdefault(normalize(name), dist)
    return sorted(unique.values(), key=lambda d: normalize(d.metadata["Name"]))


def license_of(dist: Distribution) -> str:
    """The license as the package states it: License-Expression, else a short License, else classifiers."""
    meta = dist.metadata
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    field = (meta.get("License") or "").strip()
    if field and "\n" not in field and len(field) <= _MAX_INLINE_LICENSE and field.upper() != "UNKNOWN":
        return field
    classifiers = [c[len(_LICENSE_CLASSIFIER):].split(" :: ")[-1] for c in meta.get_all("Classifier") or []
                   if c.startswith(_LICENSE_CLASSIFIER)]
    if classifiers:
        return " / ".join(classifiers)
    if field:  # the full text was put in the License field: its first line names it ("MIT License")
        return field.splitlines()[0].strip()
    return "see its license file"


def license_text_of(dist: Distribution, limit: int = 200_000) -> str:
    """The texts of the package's own license files (not every third-party file a big wheel lists)."""
    meta = dist.metadata
    declared = meta.get_all("License-File") or []
    # Top-level files only: torch declares 100+ third_party/*/LICENSE files; its own LICENSE comes first.
    names = [n for n in declared if "/" not in n] or declared[:1]
    texts = []
    for name in names:
        text = None
        for candidate in (f"licenses/{name}", name):
            try:
                text = dist.read_text(candidate)
            except (OSError, UnicodeDecodeError):
                text = None
            if text:
                break
        if text:
            texts.append(f"--- {name} ---\n{text.strip()}")
    if not texts:
        field = (meta.get("License") or "").strip()
        if "\n" in field:
            texts.append(field)
    return "\n\n".join(texts)[:limit]


def _project_url(dist: Distribution) -> str:
    meta = dist.metadata
    urls = {}
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        urls[normalize(label.strip())] = url.strip()
    for key in ("source", "source-code", "repository", "code", "homepage", "home", "documentation"):
        if urls.get(key):
            return urls[key]
    return (meta.get("Home-page") or "").strip() or next(iter(urls.values()), "")


def qt_source_note(qt_version: str) -> str:
    """Where the source of the Qt libraries inside PySide6 is (the LGPL asks us to say so)."""
    major_minor = ".".join(qt_version.split(".")[:2])
    return (f"Qt {qt_version} libraries (LGPL-3.0-only), linked dynamically and replaceable in the install "
            f"folder. Source: https://download.qt.io/official_releases/qt/{major_minor}/{qt_version}/src/ ; "
            "PySide6 source: https://code.qt.io/cgit/pyside/pyside-setup.git/")


def _own_license_text() -> str:
    """Lantern's LICENSE (a build ships it in resources/; a checkout has it at the top)."""
    for path in (resource_path("LICENSE"), Path(__file__).resolve().parents[1] / "LICENSE"):
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            continue
    return ""


def _common_license_text(*names: str) -> str:
    """Standard license texts: copied into a build's resources/licenses/ from Debian's
    /usr/share/common-licenses (where a checkout on Debian or Ubuntu reads them directly)."""
    texts = []
    for name in names:
        for folder in (resource_path("licenses"), Path("/usr/share/common-licenses")):
            try:
                texts.append(f"--- {name} ---\n" + (folder / name).read_text(encoding="utf-8").strip())
                break
            except OSError:
                continue
    return "\n\n".join(texts)


def python_component(dist: Distribution) -> Component:
    name = dist.metadata["Name"]
    key = normalize(name)
    qt = key in QT_DISTRIBUTIONS or key.startswith("pyside6")
    note = qt_source_note(dist.version.split("+")[0]) if qt else ""
    text = license_text_of(dist)
    if not text and key == ROOT_DISTRIBUTION:
        text = _own_license_text()
    if not text and qt:   # the PySide6 wheels carry no license file: the LGPL-3.0 text (with the GPL-3.0 it extends)
        text = _common_license_text("LGPL-3", "GPL-3")
    return Component(name=name, version=dist.version, license=license_of(dist), url=_project_url(dist),
                     note=note, license_text=text)


def _python_license_text() -> str:
    for base in (Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}",
                 Path(sys.base_prefix)):
        for name in ("LICENSE.txt", "LICENSE"):
            try:
                return (base / name).read_text(encoding="utf-8")
            except OSError:
                continue
    return ""


def system_components(path: Path | None = None) -> list[Component]:
    """The system libraries a build copied in (resources/system-libraries.json), if there is one."""
    path = path or resource_path(SYSTEM_LIBRARIES_FILE)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        log.warning("cannot read %s: %s", path, error)
        return []
    return [Component(name=str(item["package"]), version=str(item.get("version", "")),
                      license=str(item.get("license") or "see its copyright file"),
                      url=str(item.get("copyright", "")), kind="system",
                      note="System library from Debian, bundled: " + ", ".join(item.get("libraries", [])),
                      license_text=str(item.get("license_text", "")))
            for item in raw.get("packages", [])]


def components() -> list[Component]:
    """Everything to list in the About dialog: models, the runtime, Python packages, system libraries."""
    items = [
        Component(name=" / ".join(MODEL_NAMES), version="", license=MODEL_LICENSE, kind="model",
                  url="https://huggingface.co/openai",
                  note="Model weights: downloaded when you ask for them, never bundled. Apache-2.0, with "
                       "OpenAI's gpt-oss usage policy (USAGE_POLICY in the model repositories). The bundled "
                       "tokenizer files are the models' own (same license).",
                  license_text=_common_license_text("Apache-2.0")),
        Component(name="Python", version=platform.python_version(), license="PSF-2.0", kind="runtime",
                  url="https://www.python.org/", license_text=_python_license_text()),
    ]
    for dist in bundled_distributions():
        try:
            items.append(python_component(dist))
        except Exception as error:  # noqa: BLE001 - one broken METADATA must not empty the dialog
            log.warning("license of %s unreadable: %s", dist, error)
    items.extend(system_components())
    return items
