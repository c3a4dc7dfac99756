"""Importing the engine (and with it torch) on the worker thread without freezing the window.

Two things made the GUI thread stall while the first model loaded, although it does no loading itself:

* `import torch` loads libtorch_cpu (hundreds of MB) through the import system, which holds the
  interpreter lock while the library's static initialisers run (~0.2 s). Calling the C library's
  `dlopen` (or Windows' `LoadLibraryExW`) through ctypes releases the lock for the call, so the
  libraries are loaded that way first; the import then finds them loaded and only runs torch's
  module set-up.
* Once torch is imported, a full garbage collection walks its ~170,000 objects (~60 ms on the GUI
  thread, where app/gui_gc.py runs every collection). They live as long as the process, so they are
  moved out of the collector's sight with `gc.freeze()` right after the import; collections then only
  walk what was made afterwards (the model's own objects included, so an unloaded model is freed).

Nothing here imports torch on the GUI thread; `import_engine()` is for the worker.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

ENGINE_MODULES = ("engine.api", "engine.model", "engine.generate", "engine.kv_cache", "engine.sampling")
"""Imported together on the worker before anything is frozen (what `Engine.load` and `chat` use)."""

_lock = threading.Lock()
_imported = False
_importing = threading.Event()


def importing() -> bool:
    """The engine is being imported now (the GUI's garbage collector holds back its full collections)."""
    return _importing.is_set()


def torch_library_dir() -> Path | None:
    """torch's `lib/` folder, found without importing torch (None if torch is not installed)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "lib"
    return folder if folder.is_dir() else None


def _libraries(folder: Path) -> list[Path]:
    """The libraries to load first: torch's Python binding pulls in the rest (libtorch_cpu, c10, ...)."""
    if sys.platform == "win32":
        names = ["torch_python.dll"]
    elif sys.platform == "darwin":
        names = ["libtorch_python.dylib"]
    else:
        names = ["libtorch_global_deps.so", "libtorch_python.so"]
    return [folder / n for n in names if (folder / n).is_file()]


def _load_without_lock(path: Path) -> bool:
    """Load one shared library with the interpreter lock released (ctypes drops it for a foreign call)."""
    try:
        if sys.platform == "win32":
            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
            kernel32.LoadLibraryExW.restype = ctypes.c_void_p
            kernel32.LoadLibraryExW.argtypes = [ctypes.c_wchar_p, ctypes.c_void_p, ctypes.c_uint32]
            # LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR: its own folder first
            return bool(kernel32.LoadLibraryExW(str(path), None, 0x00001000 | 0x00000100))
        libc = ctypes.CDLL(None)
        libc.dlopen.restype = ctypes.c_void_p
        libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        # RTLD_LOCAL, as a dependency of torch._C would be loaded: only its static set-up runs now.
        return bool(libc.dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL))
    except (OSError, AttributeError) as error:
        log.debug("could not preload %s: %s", path, error)
        return False


def preload_torch_libraries() -> list[Path]:
    """Load torch's native libraries with the lock released; returns those loaded (best effort)."""
    if "torch" in sys.modules:
        return []
    folder = torch_library_dir()
    if folder is None:
        return []
    return [p for p in _libraries(folder) if _load_without_lock(p)]


def import_engine() -> ModuleType:
    """`engine.api`, imported on the calling (worker) thread; the first call preloads torch's libraries
    and freezes what the import made (see the module docstring). Safe to call again: it returns at once."""
    global _imported
    with _lock:
        if not _imported:
            _importing.set()
            try:
                loaded = preload_torch_libraries()
                log.debug("preloaded %s", ", ".join(p.name for p in loaded) or "nothing")
                for name in ENGINE_MODULES:
                    importlib.import_module(name)
                gc.freeze()   # the import's objects live as long as the process; collections skip them
            finally:
                _importing.clear()
            # (not gc.get_freeze_count(): it walks every frozen object with the interpreter lock held)
            log.info("engine imported; its objects moved out of the garbage collector's sight")
            _imported = True
    return sys.modules["engine.api"]
