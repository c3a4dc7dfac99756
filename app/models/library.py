"""The local library: what is in the models folder and the imported folders, and the slow or
destructive things done to them (verify, delete). Qt-free, no network, no threads of its own: the
download queue runs `verify` and `delete` on its worker threads.

The models folder holds, next to one folder per model, `imports.json` (folders used in place) and
`.lantern-state.json` (the last loaded model), so both move with it.
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from app.jsonfile import read_json, write_json_atomic
from app.models.error_text import os_error_text
from app.models.errors import DiskFullError, InvalidModelError, ModelManagerError, NotWritableError
from app.models.hashing import hash_file, new_hasher
from app.models.local import (LocalModel, folder_size, inspect_model_dir, read_manifest,
                              validate_model_dir, write_manifest)
from app.models.units import format_bytes

log = logging.getLogger(__name__)

IMPORTS_NAME = "imports.json"
STATE_NAME = ".lantern-state.json"


def check_writable(folder: Path) -> None:
    """Create the folder if needed and prove a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".lantern-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"The disk holding {folder} is full.") from exc
        raise NotWritableError(f"The folder {folder} cannot be written ({os_error_text(exc)}). "
                               "Choose another models folder.") from exc


@dataclass(frozen=True, slots=True)
class DiskUsage:
    models_bytes: int
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class VerifyReport:
    model: LocalModel
    ok: bool
    message: str                  # the result in words, for the panel and the command line


class LocalLibrary:
    """The models on this computer: scan, import, verify, delete."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir).expanduser()
        self._lock = threading.RLock()

    # ---- scan -------------------------------------------------------------------------
    def imports(self) -> list[Path]:
        raw = read_json(self.models_dir / IMPORTS_NAME) or {}
        return [Path(p) for p in raw.get("paths", [])] if isinstance(raw, dict) else []

    def is_imported(self, folder: Path) -> bool:
        return Path(folder) in self.imports()

    def scan(self) -> list[LocalModel]:
        """Every model folder in the models folder (hidden ones skipped) and every imported folder."""
        models = []
        if self.models_dir.is_dir():
            for child in sorted(self.models_dir.iterdir()):
                if child.is_dir() and not child.name.startswith("."):
                    models.append(inspect_model_dir(child))
        for path in self.imports():
            models.append(inspect_model_dir(path, imported=True))
        return models

    def disk_usage(self) -> DiskUsage:
        used = sum(m.size_bytes for m in self.scan() if not m.imported)
        probe = self.models_dir
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        du = shutil.disk_usage(probe)
        return DiskUsage(used, du.free, du.total)

    # ---- last loaded --------------------------------------------------------------------
    @property
    def last_loaded(self) -> Path | None:
        raw = read_json(self.models_dir / STATE_NAME) or {}
        value = raw.get("last_loaded") if isinstance(raw, dict) else None
        return Path(value) if value else None

    @last_loaded.setter
    def last_loaded(self, path: Path | None) -> None:
        raw = read_json(self.models_dir / STATE_NAME) or {}
        raw["last_loaded"] = str(path) if path is not None else None
        try:
            write_json_atomic(self.models_dir / STATE_NAME, raw)
        except OSError as exc:
            log.warning("Cannot remember the last loaded model: %s", exc)

    # ---- import -------------------------------------------------------------------------
    def import_folder(self, folder: Path) -> LocalModel:
        """Validate a folder holding a model (either layout) and list it, used in place."""
        folder = Path(folder).expanduser().resolve()
        validate_model_dir(folder)             # raises InvalidModelError with the reason
        if folder.parent == self.models_dir.resolve():
            raise InvalidModelError(f"{folder.name} is already in the models folder.")
        with self._lock:
            paths = self.imports()
            if folder not in paths:
                paths.append(folder)
                self._write_imports(paths)
        return inspect_model_dir(folder, imported=True)

    def forget_import(self, folder: Path) -> None:
        """Remove an imported folder from the list; its files stay where they are."""
        with self._lock:
            self._write_imports([p for p in self.imports() if p != Path(folder)])

    def _write_imports(self, paths: list[Path]) -> None:
        try:
            write_json_atomic(self.models_dir / IMPORTS_NAME, {"paths": [str(p) for p in paths]})
        except OSError as exc:
            raise NotWritableError(f"Cannot write the list of imported models in {self.models_dir}: "
                                   f"{os_error_text(exc)}.") from exc

    # ---- delete -------------------------------------------------------------------------
    def delete(self, folder: Path) -> int:
        """Delete a model folder in the models folder (all of it); return the bytes freed.

        An imported folder is only forgotten (0 bytes freed): its files belong to the user.
        Stopping a download into the folder first is the caller's job (the download queue).
        """
        folder = Path(folder)
        if self.is_imported(folder):
            self.forget_import(folder)
            return 0
        if folder.parent.resolve() != self.models_dir.resolve():
            raise ModelManagerError(f"{folder} is not in the models folder.")
        freed = folder_size(folder)
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            left = folder_size(folder)
            raise NotWritableError(f"Could not delete {folder.name}: {os_error_text(exc)}. "
                                   f"{format_bytes(left)} are still in {folder}.") from exc
        if self.last_loaded == folder:
            self.last_loaded = None
        return freed

    # ---- verify -------------------------------------------------------------------------
    def verify(self, folder: Path, on_progress: Callable[[int, int], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> VerifyReport:
        """Read every file of a model. With the hub's hashes (downloaded by Lantern): compare each;
        without them (imported, copied in by hand): check the structure and that every byte reads."""
        folder = Path(folder)
        imported = self.is_imported(folder)
        if not folder.is_dir():
            model = inspect_model_dir(folder, imported=imported)
            return VerifyReport(model, False, f"{folder.name}: the folder is gone ({folder}).")
        manifest = read_manifest(folder)
        if manifest is None:
            return self._verify_without_hashes(folder, imported, on_progress, should_stop)
        total = sum(r.size for r in manifest.files.values())
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if on_progress is not None:
                on_progress(done[0], total)

        bad, missing, unreadable = [], [], []
        for name, rec in manifest.files.items():
            path = folder / name
            if not path.is_file():
                rec.verified = False
                missing.append(name)
                continue
            hasher, expected = new_hasher(sha256=rec.sha256, blob_id=rec.blob_id, size=rec.size)
            try:
                n = hash_file(path, hasher, on_bytes=tick, should_stop=should_stop)
            except OSError as exc:
                unreadable.append(f"{name} ({os_error_text(exc)})")
                rec.verified = False
                continue
            if should_stop is not None and should_stop():
                return VerifyReport(inspect_model_dir(folder, imported=imported), False,
                                    f"Verifying {folder.name} was stopped.")
            if n == rec.size and (expected is None or hasher.hexdigest() == expected):
                manifest.mark_verified(folder, name)
            else:
                rec.verified, rec.corrupt = False, True
                bad.append(name)
                log.warning("%s in %s does not match the hub's hash", name, folder)
        with self._lock:
            write_manifest(folder, manifest)
        model = inspect_model_dir(folder, imported=imported)
        if bad:
            message = (f"{folder.name} is damaged: {', '.join(bad)} "
                       f"{'does' if len(bad) == 1 else 'do'} not match the hub's hashes. "
                       "Download it again to repair it (only the damaged files are fetched).")
        elif unreadable:
            message = f"{folder.name}: {', '.join(unreadable)} could not be read."
        elif missing:
            message = f"{folder.name} is incomplete: {', '.join(missing)} missing. Download it to finish it."
        else:
            message = (f"{folder.name}: all {len(manifest.files)} files match the hub's hashes "
                       f"({format_bytes(total)} checked).")
        return VerifyReport(model, not (bad or unreadable or missing), message)

    def _verify_without_hashes(self, folder: Path, imported: bool, on_progress: Callable[[int, int], None] | None,
                               should_stop: Callable[[], bool] | None) -> VerifyReport:
        try:
            validate_model_dir(folder)
        except InvalidModelError as exc:
            return VerifyReport(inspect_model_dir(folder, imported=imported), False,
                                f"{folder.name} is not usable: {exc}")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        total = sum(p.stat().st_size for p in files)
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if on_progress is not None:
                on_progress(done[0], total)

        class _Discard:
            def update(self, data: bytes, /) -> None:
                pass

            def hexdigest(self) -> str:
                return ""

        for path in files:
            try:
                hash_file(path, _Discard(), on_bytes=tick, should_stop=should_stop)
            except OSError as exc:
                return VerifyReport(inspect_model_dir(folder, imported=imported), False,
                                    f"{folder.name}: {path.name} could not be read ({os_error_text(exc)}).")
            if should_stop is not None and should_stop():
                return VerifyReport(inspect_model_dir(folder, imported=imported), False,
                                    f"Verifying {folder.name} was stopped.")
        model = inspect_model_dir(folder, imported=imported)
        where = "imported" if imported else "copied in by hand"
        return VerifyReport(model, model.usable, (
            f"{folder.name} checked: the config and every weight file's header are sound, and all {len(files)} "
            f"files ({format_bytes(total)}) read without error. It has no hub hashes to compare with ({where}, "
            "not downloaded by Lantern), so changed bytes inside the weights cannot be detected."))
