"""The native library's interface as lantern_kernels.h states it, read at run time (nothing restated here).

`read_interface()` parses the header shipped next to this file: LK_ABI_VERSION, the `lk_status` and
`lk_path` enums and every `LK_API` prototype, with ctypes types for their parameters. `bind()` sets
`restype`/`argtypes` on a loaded library from that. The header keeps to a plain subset of C for this
reader (its opening comment says which); anything else is an error here, caught by the tests.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADER = Path(__file__).with_name("lantern_kernels.h")

_SCALARS: dict[str, Any] = {
    "int": ctypes.c_int,
    "unsigned": ctypes.c_uint,
    "int64_t": ctypes.c_int64,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
    "lk_status": ctypes.c_int,  # C enums are int-sized (GCC, Clang, MSVC)
    "lk_path": ctypes.c_int,
}


class HeaderError(ValueError):
    """lantern_kernels.h holds something this reader does not understand (a bug in the header or here)."""


@dataclass(frozen=True)
class Function:
    name: str
    restype: Any             # a ctypes type, or None for void
    argtypes: tuple[Any, ...]
    params: tuple[str, ...]  # parameter names, for messages


@dataclass(frozen=True)
class Interface:
    abi_version: int
    statuses: dict[str, int]      # "LK_OK" -> 0, ...
    paths: dict[str, int]         # "auto" -> 0, "scalar" -> 1, ... (LK_PATH_ prefix dropped, lower case)
    functions: dict[str, Function]

    def status_name(self, code: int) -> str:
        for name, value in self.statuses.items():
            if value == code:
                return name
        return f"unknown status {code}"


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _enum(text: str, name: str) -> dict[str, int]:
    m = re.search(r"typedef\s+enum\s+" + name + r"\s*\{(.*?)\}\s*" + name + r"\s*;", text, flags=re.S)
    if m is None:
        raise HeaderError(f"enum {name} not found")
    items: dict[str, int] = {}
    for entry in m.group(1).split(","):
        entry = entry.strip()
        if not entry:
            continue
        e = re.fullmatch(r"(\w+)\s*=\s*(-?\d+)", entry)
        if e is None:
            raise HeaderError(f"enum {name}: entry {entry!r} is not `NAME = value`")
        items[e.group(1)] = int(e.group(2))
    return items


def _ctype(decl: str, where: str) -> Any:
    """ctypes type of a C type: any pointer is a c_void_p (callers pass addresses), scalars by name."""
    if "*" in decl:
        return ctypes.c_void_p
    base = " ".join(t for t in decl.split() if t != "const")
    if base == "void":
        return None
    if base not in _SCALARS:
        raise HeaderError(f"{where}: type {decl!r} is not one the binding knows")
    return _SCALARS[base]


def _functions(text: str) -> dict[str, Function]:
    funcs: dict[str, Function] = {}
    for m in re.finditer(r"LK_API\s+([^;{]*?)\b(lk_\w+)\s*\(([^)]*)\)\s*;", text):
        ret, name, params = m.group(1).strip(), m.group(2), " ".join(m.group(3).split())
        argtypes, names = [], []
        if params not in ("", "void"):
            for p in params.split(","):
                pm = re.fullmatch(r"\s*(.*?[\s*])(\w+)\s*", p)
                if pm is None:
                    raise HeaderError(f"{name}: parameter {p!r} has no name")
                argtypes.append(_ctype(pm.group(1), f"{name}({pm.group(2)})"))
                names.append(pm.group(2))
        if name in funcs:
            raise HeaderError(f"{name} declared twice")
        funcs[name] = Function(name, _ctype(ret, f"{name} result"), tuple(argtypes), tuple(names))
    if not funcs:
        raise HeaderError("no LK_API functions found")
    return funcs


def parse(text: str) -> Interface:
    """The interface stated by header text (see the module docstring)."""
    m = re.search(r"#define\s+LK_ABI_VERSION\s+(\d+)", text)
    if m is None:
        raise HeaderError("LK_ABI_VERSION not defined")
    code = _strip_comments(text)
    paths = {k.removeprefix("LK_PATH_").lower(): v for k, v in _enum(code, "lk_path").items()}
    return Interface(int(m.group(1)), _enum(code, "lk_status"), paths, _functions(code))


def read_interface(path: Path = HEADER) -> Interface:
    return parse(path.read_text(encoding="utf-8"))


def bind(cdll: ctypes.CDLL, interface: Interface) -> None:
    """Set restype/argtypes of every header function on `cdll` (AttributeError if the library lacks one)."""
    for f in interface.functions.values():
        fn = getattr(cdll, f.name)
        fn.restype = f.restype
        fn.argtypes = list(f.argtypes)
