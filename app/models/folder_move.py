"""Moving the models folder: copy every file, check each copy's sha256 against its source, switch
to the new folder, and only then remove the old files. Qt-free, no threads (the manager runs it on
one and pauses downloads around it).

Until the switch the old folder is untouched, so an interrupted move leaves it usable; a second
try into the same place accepts what the first one copied.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable

from app.models.downloader import SPACE_MARGIN_BYTES, disk_error
from app.models.errors import DiskFullError, ModelManagerError, VerifyError
from app.models.hashing import CHUNK, hash_file
from app.models.library import check_writable
from app.models.units import format_bytes

MOVING_SUFFIX = ".moving"


def move_tree(old: Path, new: Path, *, on_switch: Callable[[Path], None],
              on_progress: Callable[[int, int, str], None] | None = None) -> Path:
    """Move everything in `old` to `new` (see the module doc); `on_switch(new)` is called once
    every copy is checked and before anything in `old` is removed. Returns `new` resolved."""
    new = Path(new).expanduser().resolve()
    if new == old.resolve() or new.is_relative_to(old.resolve()):
        raise ModelManagerError("Choose a folder outside the current models folder.")
    check_writable(new)
    files = []
    if old.is_dir():
        for dirpath, _dirs, names in os.walk(old):
            for name in names:
                src = Path(dirpath) / name
                if src.is_file() and not src.is_symlink():
                    files.append(src)
    sources = {f.relative_to(old) for f in files}
    clashes = sorted({rel.parts[0] for rel in sources if (new / rel.parts[0]).exists()}
                     - _leftovers_of_a_move(new, sources))
    if clashes:
        raise ModelManagerError(f"{new} already holds {', '.join(clashes)}; choose an empty folder.")
    total = sum(f.stat().st_size for f in files)
    free = shutil.disk_usage(new).free
    if total + SPACE_MARGIN_BYTES > free:
        raise DiskFullError(f"Not enough free space: needs {format_bytes(total)}, {format_bytes(free)} free.",
                            needed_bytes=total, free_bytes=free)
    done = 0
    for src in files:
        dst = new / src.relative_to(old)
        done = _copy_verified(src, dst, done, total, on_progress)
    on_switch(new)
    for src in files:
        src.unlink(missing_ok=True)
    for dirpath, _dirs, _names in sorted(os.walk(old), key=lambda t: -len(t[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass
    return new


def _leftovers_of_a_move(new: Path, sources: set[Path]) -> set[str]:
    """Top-level names in `new` holding only what an interrupted move of `sources` wrote there."""
    ok = set()
    for top in {rel.parts[0] for rel in sources}:
        target = new / top
        if not target.exists():
            continue
        if target.is_file():
            if Path(top) in sources:
                ok.add(top)
            continue
        inside = [p.relative_to(new) for p in target.rglob("*") if p.is_file()]
        if all(rel in sources or (rel.name.endswith(MOVING_SUFFIX)
                                  and rel.with_name(rel.name[: -len(MOVING_SUFFIX)]) in sources)
               for rel in inside):
            ok.add(top)
    return ok


def _copy_verified(src: Path, dst: Path, done: int, total: int,
                   on_progress: Callable[[int, int, str], None] | None) -> int:
    """Copy one file through `<dst>.moving`, check the copy's sha256 against the source, rename."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + MOVING_SUFFIX)
    src_hash = hashlib.sha256()
    try:
        with src.open("rb") as fin, tmp.open("wb") as fout:
            while data := fin.read(CHUNK):
                fout.write(data)
                src_hash.update(data)
                done += len(data)
                if on_progress is not None:
                    on_progress(done, total, src.name)
            fout.flush()
            os.fsync(fout.fileno())
        dst_hash = hashlib.sha256()
        hash_file(tmp, dst_hash)
        if dst_hash.hexdigest() != src_hash.hexdigest():
            raise VerifyError(f"The copy of {src.name} differs from the original; the move was stopped.")
        os.replace(tmp, dst)
        shutil.copystat(src, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(exc, dst) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return done
