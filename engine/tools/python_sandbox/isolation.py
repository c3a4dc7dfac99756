"""How the Python kernel is isolated on this computer, and the command that starts it so.

One place decides (`detect_isolation`), and says in words what is and is not isolated, for the
per-chat switch to show before the user turns Python on (docs/tools.md "Python sandbox"):

* Linux with bubblewrap (`bwrap`): new user (when not root), network, PID, IPC, UTS and cgroup
  namespaces. The network namespace has only a loopback device that is down: no connection leaves
  it, not even to this computer's own servers. The file system is empty except the system's
  programs and libraries (read-only), the Python installation (read-only), a private /tmp, the
  chat's folder at /mnt/data (read-write) and the chat's attachments in it (read-only); the home
  folder and every other file of the user are absent. The kernel dies with Lantern.
* macOS: `sandbox-exec` with the profile `macos_profile()` writes (no network, no file outside
  the Python installation, the chat's folder and its attachments). Written from Apple's sandbox
  profile language; not run here (no Mac): unverified.
* Anywhere else (Windows, Linux without bubblewrap): no isolation. The kernel still gets the
  resource limits below, but sees the network and every file the user can read.

On every POSIX system the kernel itself lowers its limits before running any code
(kernel.py): address space, file size, open files, CPU seconds per cell, a lower scheduling
priority, and under bubblewrap the number of processes (counted per user namespace there; outside
one the limit would count every process of the user); Lantern kills it after the wall-time limit
of a call.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

KERNEL_SCRIPT = Path(__file__).with_name("kernel.py")
SANDBOX_KERNEL_PATH = "/opt/lantern/kernel.py"
SANDBOX_WORKDIR = "/mnt/data"
UNPRIVILEGED_UID = 65534      # "nobody": a kernel started by root runs as this user
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives",
             "/etc/ssl", "/etc/ca-certificates", "/etc/fonts", "/etc/mime.types", "/etc/matplotlibrc")


@dataclass(frozen=True)
class Isolation:
    """What protects the user when the model runs Python, in words for the window."""

    kind: str                                # "bubblewrap" | "sandbox-exec" | "none"
    summary: str
    isolated: tuple[str, ...] = field(default=())
    not_isolated: tuple[str, ...] = field(default=())
    verified: bool = True                    # False: written but never run on this kind of system

    @property
    def available(self) -> bool:
        return self.kind != "none"

    def describe(self) -> str:
        """The switch's explanation: the summary, then what is blocked and what is not, one per line."""
        parts = [self.summary]
        if self.isolated:
            parts.append("Blocked:\n" + "\n".join(f"• {x}" for x in self.isolated))
        if self.not_isolated:
            parts.append("Not blocked:\n" + "\n".join(f"• {x}" for x in self.not_isolated))
        return "\n\n".join(parts)


LIMITS_TEXT = ("memory, number of processes, file size, CPU time per run and 120 seconds of wall time per run "
               "are limited")


def bubblewrap_isolation(running_as_root: bool) -> Isolation:
    return Isolation(
        "bubblewrap",
        "Python runs in a bubblewrap sandbox on this computer.",
        isolated=("any network connection, including to servers on this computer",
                  "your home folder and every file you did not attach (only the system's programs, Python, "
                  "this chat's folder and its attachments are visible; attachments read-only)",
                  "other programs' processes and shared memory",
                  LIMITS_TEXT)
        + (("code runs as the unprivileged user 'nobody', not as root",) if running_as_root else ()),
        not_isolated=("it uses this computer's CPU and memory up to those limits",
                      "files it writes in this chat's folder stay there until the chat is deleted",
                      "a flaw in the Linux kernel or in bubblewrap itself"),
    )


def macos_isolation() -> Isolation:
    return Isolation(
        "sandbox-exec",
        "Python runs under macOS's sandbox (sandbox-exec) on this computer; this profile has not been "
        "tested on a Mac yet.",
        isolated=("network connections", "files outside Python, this chat's folder and its attachments",
                  "memory, file size, CPU time per run and 120 seconds of wall time per run are limited"),
        not_isolated=("other programs' processes (no separate process namespace on macOS)",
                      "the number of processes it starts (macOS counts every process of yours in that limit)",
                      "it uses this computer's CPU and memory up to those limits",
                      "sandbox-exec is deprecated by Apple and may stop working"),
        verified=False,
    )


def no_isolation(reason: str) -> Isolation:
    return Isolation(
        "none",
        f"No sandbox is available here ({reason}). Python would run as you, with your rights.",
        isolated=(("memory, file size and CPU time per run are limited, and each run is stopped after 120 "
                   "seconds") if os.name == "posix" else "each run is stopped after 120 seconds",),
        not_isolated=("the network: code could connect to the internet and to servers on this computer",
                      "your files: code could read, change or delete anything you can",
                      "other programs you run", "the number of processes it starts"),
    )


def detect_isolation(platform: str | None = None) -> Isolation:
    """The best isolation this computer offers (bubblewrap on Linux, sandbox-exec on macOS)."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        if shutil.which("bwrap") is None:
            return no_isolation("bubblewrap is not installed; install the 'bubblewrap' package to get one")
        return bubblewrap_isolation(os.geteuid() == 0)
    if platform == "darwin":
        if shutil.which("sandbox-exec") is None:
            return no_isolation("sandbox-exec was not found")
        return macos_isolation()
    return no_isolation(f"Lantern has no sandbox for {platform}")


# --- which interpreter runs the kernel -------------------------------------------------------------------


class NoInterpreterError(RuntimeError):
    """A built Lantern (PyInstaller) carries no interpreter of its own for the model's code, and none was found."""


def kernel_interpreter() -> str:
    """The Python that runs the kernel: Lantern's own from a checkout or an installed package; in a built
    program (PyInstaller: sys.executable is Lantern itself, with only the modules Lantern imports) the
    computer's `python3`, which has the whole standard library and whatever the user installed for it."""
    if not getattr(sys, "frozen", False):
        return sys.executable
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found:
            return found
    raise NoInterpreterError("Python is not installed on this computer: install Python 3 (on Debian and Ubuntu "
                             "'sudo apt install python3') to let the model run Python.")


_DIRS_SCRIPT = ("import json, os, sys, sysconfig; "
                "print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, "
                "os.path.dirname(os.path.realpath(sys.executable))] + "
                "[sysconfig.get_paths().get(k) or '' for k in ('stdlib', 'platstdlib', 'purelib', 'platlib')] + "
                "[p for p in sys.path if 'site-packages' in p]))")


def _interpreter_dirs(python: str) -> set[str]:
    """The folders `python` (another interpreter than this process's) reads its library from."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return _own_dirs()
    try:
        out = subprocess.run([python, "-I", "-c", _DIRS_SCRIPT], capture_output=True, text=True, timeout=20,
                             check=True).stdout
        return {d for d in json.loads(out) if d}
    except (OSError, subprocess.SubprocessError, ValueError):
        return {os.path.dirname(os.path.dirname(os.path.realpath(python)))}


def _own_dirs() -> set[str]:
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.realpath(sys.executable))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            candidates.add(path)
    candidates |= {p for p in sys.path if p and os.path.isdir(p) and "site-packages" in p}
    return candidates


# --- what the kernel needs to see ---------------------------------------------------------------------


def python_dirs(python: str | None = None) -> list[str]:
    """The folders the interpreter `python` (default: this process's), its standard library and installed
    packages live in, outside the system folders that are visible anyway."""
    candidates = _interpreter_dirs(python) if python else _own_dirs()
    out: list[str] = []
    for path in sorted({os.path.realpath(p) for p in candidates} | candidates, key=len):
        if not os.path.isdir(path):
            continue
        if any(path == d or path.startswith(d.rstrip("/") + "/") for d in out):
            continue
        if any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRS):
            continue            # already visible as part of the system
        out.append(path)
    return out


def bwrap_command(workdir: Path, attachments: Sequence[tuple[str, Path]], python: str, kernel_args: Sequence[str],
                  *, running_as_root: bool) -> list[str]:
    """The bubblewrap command line that starts the kernel (see the module docstring for what it hides).

    `attachments`: (name, host path) pairs shown read-only at /mnt/data/<name>.
    """
    cmd = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid", "--unshare-ipc",
           "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if not running_as_root:
        cmd.append("--unshare-user")     # root stays root here and drops to 'nobody' in the kernel
    # The private /tmp first: bwrap applies its arguments in order, and a tmpfs mounted after the binds would
    # hide a Python installed under /tmp (a checkout there, a venv made by a test).
    cmd += ["--perms", "1777", "--tmpfs", "/tmp"]
    # The folders above what is bound (e.g. /mnt, /opt, a home folder holding Python) are made
    # world-traversable, empty, before anything is bound under them (bwrap would make them 0700).
    py_dirs = python_dirs(python)
    bound = [*py_dirs, SANDBOX_WORKDIR, SANDBOX_KERNEL_PATH, *(f for f in ETC_FILES if os.path.exists(f))]
    parents = sorted({str(q) for b in bound for q in Path(b).parents if str(q) not in ("/", "/tmp")},
                     key=lambda q: (q.count("/"), q))
    for parent in parents:
        if not any(parent == d or parent.startswith(d + "/") for d in (*SYSTEM_DIRS, *py_dirs)):
            cmd += ["--perms", "0755", "--dir", parent]
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    for f in ETC_FILES:
        cmd += ["--ro-bind-try", f, f]
    for d in py_dirs:
        cmd += ["--ro-bind", d, d]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--bind", str(workdir), SANDBOX_WORKDIR]
    for name, path in attachments:
        cmd += ["--ro-bind", str(path), f"{SANDBOX_WORKDIR}/{name}"]
    cmd += ["--ro-bind", str(KERNEL_SCRIPT), SANDBOX_KERNEL_PATH, "--chdir", SANDBOX_WORKDIR,
            "--", python, "-I", "-u", SANDBOX_KERNEL_PATH, *kernel_args]
    return cmd


def _sb_string(path: str) -> str:
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def macos_profile(workdir: Path, attachments: Sequence[Path], read_only_dirs: Sequence[str]) -> str:
    """A sandbox-exec (Seatbelt) profile: no network, read only Python and the attachments, write only
    the chat's folder and a temporary folder. Unverified (written without a Mac to run it on)."""
    reads = "\n".join(f"    (subpath {_sb_string(d)})" for d in read_only_dirs)
    files = "\n".join(f"    (literal {_sb_string(str(p))})" for p in attachments)
    tmp = os.path.realpath(os.environ.get("TMPDIR", "/tmp"))
    return f""";; Lantern: the model's Python kernel (generated; see engine/tools/python_sandbox/isolation.py)
(version 1)
(deny default)
(import "bsd.sb")
(deny network*)
(allow process-fork)
(allow process-exec)
(allow signal (target same-sandbox))
(allow sysctl-read)
(allow file-read-metadata)
(allow file-read*
    (subpath "/usr/lib") (subpath "/usr/share") (subpath "/System") (subpath "/Library/Frameworks")
    (subpath "/private/var/db/dyld") (subpath "/dev")
{reads}
{files})
(allow file-read* file-write*
    (subpath {_sb_string(str(workdir))})
    (subpath {_sb_string(tmp)})
    (literal "/dev/null") (literal "/dev/tty"))
"""
