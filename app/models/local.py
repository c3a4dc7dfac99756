"""What is on disk: model folders, their manifests, their state, validation. Qt-free.

A folder the app downloaded holds `.lantern-manifest.json`: the hub's files with sizes, hashes and
which were verified (with size and mtime at verification, so 13 GB are not rehashed at each start).
A folder without a manifest (imported, or copied in by hand) is checked with engine.config's rules
plus a cheap read of each safetensors header.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from engine.config import CheckpointLocation, ModelConfig, load_config
from engine.errors import EngineError

from app.jsonfile import read_json, write_json_atomic
from app.models.catalog import RemoteFile, RemoteModel
from app.models.errors import InvalidModelError

log = logging.getLogger(__name__)

MANIFEST_NAME = ".lantern-manifest.json"
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


class ModelState(str, Enum):
    READY = "ready"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    INCOMPLETE = "incomplete"
    UNVERIFIED = "unverified"
    CORRUPT = "corrupt"
    INVALID = "invalid"

    @property
    def label(self) -> str:
        return {"ready": "Ready", "downloading": "Downloading", "paused": "Paused", "incomplete": "Incomplete",
                "unverified": "Changed since verified", "corrupt": "Corrupt",
                "invalid": "Not a gpt-oss model"}[self.value]


@dataclass(slots=True)
class FileRecord:
    size: int
    sha256: str | None
    blob_id: str | None
    verified: bool = False
    mtime_ns: int | None = None   # of the file when it was verified
    corrupt: bool = False


@dataclass(slots=True)
class Manifest:
    repo_id: str
    revision: str
    files: dict[str, FileRecord] = field(default_factory=dict)

    @classmethod
    def for_remote(cls, remote: RemoteModel) -> "Manifest":
        return cls(remote.repo_id, remote.revision,
                   {f.name: FileRecord(f.size, f.sha256, f.blob_id) for f in remote.files})

    def remote(self) -> RemoteModel:
        return RemoteModel(self.repo_id, self.revision, tuple(
            RemoteFile(name, r.size, r.sha256, r.blob_id) for name, r in sorted(self.files.items())))

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "repo_id": self.repo_id, "revision": self.revision,
                "files": {n: {"size": r.size, "sha256": r.sha256, "blob_id": r.blob_id, "verified": r.verified,
                              "mtime_ns": r.mtime_ns, "corrupt": r.corrupt} for n, r in self.files.items()}}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "Manifest":
        files = {n: FileRecord(int(r["size"]), r.get("sha256"), r.get("blob_id"), bool(r.get("verified")),
                               r.get("mtime_ns"), bool(r.get("corrupt"))) for n, r in raw["files"].items()}
        return cls(str(raw["repo_id"]), str(raw["revision"]), files)

    def mark_verified(self, folder: Path, name: str) -> None:
        rec = self.files[name]
        rec.verified, rec.corrupt = True, False
        rec.mtime_ns = (folder / name).stat().st_mtime_ns

    def is_file_done(self, folder: Path, name: str) -> bool:
        """Complete and verified, and unchanged (size and mtime) since."""
        rec = self.files.get(name)
        if rec is None or not rec.verified:
            return False
        try:
            st = (folder / name).stat()
        except OSError:
            return False
        return st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns


def read_manifest(folder: Path) -> Manifest | None:
    raw = read_json(folder / MANIFEST_NAME)
    if raw is None:
        return None
    try:
        return Manifest.from_json(raw)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("Ignoring broken manifest in %s (%s)", folder, exc)
        return None


def write_manifest(folder: Path, manifest: Manifest) -> None:
    write_json_atomic(folder / MANIFEST_NAME, manifest.to_json())


def folder_size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def check_safetensors_header(path: Path) -> None:
    """Read the header of a .safetensors file; its tensors must end exactly at the end of the file."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise InvalidModelError(f"{path.name} is truncated (no safetensors header).")
            (n,) = struct.unpack("<Q", raw)
            if n > MAX_SAFETENSORS_HEADER or 8 + n > size:
                raise InvalidModelError(f"{path.name} is not a safetensors file or is truncated.")
            header = json.loads(fh.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidModelError(f"{path.name} cannot be read as safetensors ({exc}).") from exc
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    if not ends:
        raise InvalidModelError(f"{path.name} holds no tensors.")
    if 8 + n + max(ends) != size:
        raise InvalidModelError(f"{path.name} is truncated or has extra bytes ({size} bytes on disk, "
                                f"header says {8 + n + max(ends)}).")


def validate_model_dir(folder: Path) -> tuple[ModelConfig, CheckpointLocation]:
    """engine.config's rules + every weight file's header + the index's shards present."""
    raw = read_json(folder / "config.json") if (folder / "config.json").is_file() else None
    if isinstance(raw, dict) and raw.get("model_type") not in (None, "gpt_oss"):
        raise InvalidModelError(f"This is a '{raw['model_type']}' model, not gpt-oss (file: {folder / 'config.json'})")
    try:
        config, location = load_config(folder)
    except EngineError as exc:
        raise InvalidModelError(str(exc)) from exc
    index_path = location.weights_dir / "model.safetensors.index.json"
    if location.layout == "huggingface" and index_path.exists():
        index = read_json(index_path)
        if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
            raise InvalidModelError(f"{index_path.name} cannot be read.")
        missing = sorted({s for s in index["weight_map"].values() if not (location.weights_dir / s).is_file()})
        if missing:
            raise InvalidModelError(f"Weight files are missing: {', '.join(missing)}.")
    for st in sorted(location.weights_dir.glob("*.safetensors")):
        check_safetensors_header(st)
    return config, location


@dataclass(frozen=True, slots=True)
class LocalModel:
    name: str
    path: Path
    state: ModelState
    size_bytes: int
    repo_id: str | None
    imported: bool
    message: str = ""
    config: ModelConfig | None = None

    @property
    def usable(self) -> bool:
        return self.state == ModelState.READY


def inspect_model_dir(folder: Path, *, imported: bool = False) -> LocalModel:
    """State of one model folder (cheap: no hashing)."""
    size = folder_size(folder) if folder.is_dir() else 0
    manifest = read_manifest(folder) if folder.is_dir() else None
    name = folder.name
    if not folder.is_dir():
        return LocalModel(name, folder, ModelState.INVALID, 0, None, imported, "The folder is gone.")
    if manifest is not None:
        missing, corrupt, changed = [], [], []
        for fname, rec in manifest.files.items():
            p = folder / fname
            if rec.corrupt:
                corrupt.append(fname)
            elif not p.is_file():
                missing.append(fname)
            elif p.stat().st_size != rec.size:
                corrupt.append(fname)
            elif not manifest.is_file_done(folder, fname):
                changed.append(fname)
        if corrupt:
            return LocalModel(name, folder, ModelState.CORRUPT, size, manifest.repo_id, imported,
                              f"Damaged: {', '.join(corrupt)}. Download again to repair.")
        if missing:
            return LocalModel(name, folder, ModelState.INCOMPLETE, size, manifest.repo_id, imported,
                              f"{len(missing)} of {len(manifest.files)} files still to download.")
        if changed:
            return LocalModel(name, folder, ModelState.UNVERIFIED, size, manifest.repo_id, imported,
                              f"Changed since verified: {', '.join(changed)}. Verify it again.")
    try:
        config, _loc = validate_model_dir(folder)
    except InvalidModelError as exc:
        return LocalModel(name, folder, ModelState.INVALID, size, manifest.repo_id if manifest else None,
                          imported, str(exc))
    return LocalModel(name, folder, ModelState.READY, size, manifest.repo_id if manifest else None, imported,
                      "", config)
