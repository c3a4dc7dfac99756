"""The `python` tool: a stateful kernel per chat, in the sandbox, with limits on every run.

    session = PythonSession(workdir, attachments=[("data.csv", path)], limits=SandboxLimits())
    text = session.run("import math\\nmath.sqrt(9001)")    # "94.86832980505137\\n"
    session.close()

A plain subprocess protocol (kernel.py), not Jupyter: one process, two pipes, no ports, no
extra packages in the sandbox, and nothing to connect to across the network namespace. The
kernel starts on the first run and is reused (variables persist); a run that exceeds the wall
time is interrupted (KeyboardInterrupt, state kept), and if it does not stop within a few
seconds the kernel is killed with everything it started (state lost, a new kernel next time).
The output the model gets is cut to `max_output_chars` (head and tail kept, with a note).
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.tools.python_sandbox.isolation import (
    KERNEL_SCRIPT,
    SANDBOX_WORKDIR,
    UNPRIVILEGED_UID,
    Isolation,
    NoInterpreterError,
    bwrap_command,
    detect_isolation,
    kernel_interpreter,
    macos_profile,
    python_dirs,
)

log = logging.getLogger(__name__)

MARK = "\x1e"
NO_OUTPUT = "[WARN] No output available. Use print() to output anything to stdout to receive the output"


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 120.0                 # wall time per run (the trained text promises 120 s)
    memory_bytes: int = 2 * 2**30            # address space of the kernel and of each child
    max_processes: int = 64                  # processes and threads of the sandbox's user
    max_file_bytes: int = 1 * 2**30          # largest file it may write
    max_open_files: int = 256
    cpu_seconds_per_run: int = 240           # CPU time per run (two cores busy for the whole wall time)
    cpu_seconds_total: int = 3600            # CPU time of one kernel's life; then it is restarted
    max_output_chars: int = 16_000           # what the model is shown of one run's output
    nice: int = 10
    start_timeout_s: float = 30.0
    interrupt_grace_s: float = 3.0


class SandboxError(Exception):
    """The kernel could not be started (the message says why, for the user)."""


class _Output:
    """One run's output as it streams in: the first and last parts kept, the middle counted."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit * 2 // 3
        self.tail_limit = limit - self.head_limit
        self.head: list[str] = []
        self.head_len = 0
        self.tail = ""
        self.dropped = 0

    def add(self, text: str) -> None:
        if self.head_len < self.head_limit:
            take = text[: self.head_limit - self.head_len]
            self.head.append(take)
            self.head_len += len(take)
            text = text[len(take):]
        if text:
            self.tail += text
            if len(self.tail) > self.tail_limit:
                self.dropped += len(self.tail) - self.tail_limit
                self.tail = self.tail[-self.tail_limit:]

    def text(self) -> str:
        head = "".join(self.head)
        if self.dropped:
            return f"{head}\n…[{self.dropped:,} characters of output cut]…\n{self.tail}"
        return head + self.tail


class PythonSession:
    """One chat's Python kernel. Thread-safe: runs are serialised."""

    def __init__(self, workdir: Path | str, *, attachments: Sequence[tuple[str, Path]] = (),
                 limits: SandboxLimits = SandboxLimits(), isolation: Isolation | None = None,
                 python: str | None = None, require_isolation: bool = False) -> None:
        self.workdir = Path(workdir)
        self.attachments = [(name, Path(p)) for name, p in attachments]
        self.limits = limits
        self.isolation = isolation or detect_isolation()
        self.python: str | None = python     # None: kernel_interpreter() decides at the first start
        self.require_isolation = require_isolation
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stdin_lock = threading.Lock()
        self._cond = threading.Condition()
        self._buffer = ""                    # decoded stdout not yet consumed
        self._eof = False
        self._reader: threading.Thread | None = None
        self.restarts = 0
        self._running_nonce: str | None = None   # the run in progress (interrupt() names it)

    # -- lifecycle ----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The host's id of the process Lantern started (bwrap, or the kernel itself without it)."""
        return self._proc.pid if self.running and self._proc is not None else None

    def _config(self, workdir_inside: str, drop_to_uid: int | None = None, *, count_processes: bool = False) -> dict:
        """The kernel's limits. The process limit only inside bubblewrap: elsewhere RLIMIT_NPROC counts
        every process of the user (a desktop has hundreds), so it would stop the kernel itself."""
        lim = self.limits
        return {"memory_bytes": lim.memory_bytes, "max_processes": lim.max_processes if count_processes else None,
                "max_file_bytes": lim.max_file_bytes, "max_open_files": lim.max_open_files,
                "cpu_seconds_per_cell": lim.cpu_seconds_per_run, "cpu_seconds_total": lim.cpu_seconds_total,
                "nice": lim.nice, "drop_to_uid": drop_to_uid, "workdir": workdir_inside}

    def _environment(self, home: str) -> dict[str, str]:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": "/tmp" if home == "/tmp" else home,
               "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "2",
               "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "NUMEXPR_NUM_THREADS": "2"}
        if sys.platform == "darwin":
            env["PATH"] = f"{os.path.dirname(self.python)}:/usr/bin:/bin"
        return env

    def _command(self) -> tuple[list[str], dict[str, str]]:
        if self.python is None:
            try:
                self.python = kernel_interpreter()
            except NoInterpreterError as exc:
                raise SandboxError(str(exc)) from exc
        root = os.name == "posix" and os.geteuid() == 0
        kind = self.isolation.kind
        if kind == "bubblewrap":
            if root:
                os.chown(self.workdir, UNPRIVILEGED_UID, UNPRIVILEGED_UID)   # the kernel runs as nobody
            config = json.dumps(self._config(SANDBOX_WORKDIR, UNPRIVILEGED_UID if root else None,
                                             count_processes=True))
            cmd = bwrap_command(self.workdir, self.attachments, self.python, [config], running_as_root=root)
            return cmd, self._environment("/tmp")
        if self.require_isolation:
            raise SandboxError(f"Python needs a sandbox here and none is available: {self.isolation.summary}")
        self._link_attachments()
        config = json.dumps(self._config(str(self.workdir)))
        cmd = [self.python, "-I", "-u", str(KERNEL_SCRIPT), config]
        env = self._environment(str(self.workdir))
        if kind == "sandbox-exec":
            profile = macos_profile(self.workdir, [p for _, p in self.attachments], python_dirs(self.python))
            cmd = ["sandbox-exec", "-p", profile, *cmd]
        return cmd, env

    def _link_attachments(self) -> None:
        """Without bubblewrap there is no /mnt/data: attachments appear as links in the working folder."""
        for name, path in self.attachments:
            link = self.workdir / name
            if not link.exists() and not link.is_symlink():
                try:
                    link.symlink_to(path)
                except OSError as exc:
                    log.info("could not link %s into %s: %s", path, self.workdir, exc)

    def start(self) -> None:
        """Start the kernel (done by the first run); SandboxError if it does not come up."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd, env = self._command()
        log.info("starting the python kernel (%s) in %s", self.isolation.kind, self.workdir)
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, env=env, cwd=str(self.workdir),
                                          start_new_session=True, close_fds=True)
        except OSError as exc:
            raise SandboxError(f"Python could not be started ({exc}).") from exc
        with self._cond:
            self._buffer, self._eof = "", False
        self._reader = threading.Thread(target=self._read_output, args=(self._proc,), name="python-kernel-output",
                                        daemon=True)
        self._reader.start()
        line = self._wait_for(MARK + "ready ", self.limits.start_timeout_s)
        if line is None:
            out = self._take_all()
            self._kill()
            raise SandboxError("The Python sandbox did not start: " + (out.strip()[-800:] or "no output"))

    def _read_output(self, proc: subprocess.Popen[bytes]) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            text = decoder.decode(chunk, final=not chunk)
            with self._cond:
                if text:
                    self._buffer += text
                if not chunk:
                    self._eof = True
                self._cond.notify_all()
            if not chunk:
                return
            with self._cond:      # keep memory bounded while nobody consumes (a print loop)
                while len(self._buffer) > 4 * 2**20 and not self._eof and proc.poll() is None:
                    self._cond.wait(0.5)

    def _wait_for(self, prefix: str, timeout: float) -> str | None:
        """Wait for a line starting with `prefix`; return it (and drop everything up to it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                at = self._buffer.find(prefix)
                if at >= 0 and "\n" in self._buffer[at:]:
                    end = self._buffer.index("\n", at)
                    line = self._buffer[at:end]
                    self._buffer = self._buffer[end + 1:]
                    return line
                if self._eof or time.monotonic() >= deadline:
                    return None
                self._cond.wait(min(0.2, max(0.0, deadline - time.monotonic())))

    def _take_all(self) -> str:
        with self._cond:
            out, self._buffer = self._buffer, ""
            self._cond.notify_all()
            return out

    def close(self) -> None:
        """Stop the kernel (the working folder stays)."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b'{"op": "exit"}\n')
                proc.stdin.flush()
                proc.wait(2)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # the session: bwrap, or the kernel and its children
            except (ProcessLookupError, PermissionError):
                proc.kill()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            log.error("python kernel %d did not exit after SIGKILL", proc.pid)
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(2)
            self._reader = None

    # -- running code -------------------------------------------------------------------------------

    def run(self, code: str) -> str:
        """Run one cell; returns what the model is told (output, result, traceback, or what went wrong)."""
        with self._lock:
            return self._run(code)

    def interrupt(self) -> None:
        """Interrupt the run in progress (from another thread), as a timeout would; state is kept."""
        nonce = self._running_nonce
        if nonce is not None:
            self._send({"op": "interrupt", "id": nonce})

    def _send(self, request: dict) -> bool:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return False
        with self._stdin_lock:
            try:
                proc.stdin.write((json.dumps(request) + "\n").encode())
                proc.stdin.flush()
                return True
            except (OSError, ValueError):
                return False

    def _run(self, code: str) -> str:
        if not self.running:
            if self._proc is not None:
                self._kill()
                self.restarts += 1
            self.start()
        nonce = secrets.token_hex(8)
        self._running_nonce = nonce
        output = _Output(self.limits.max_output_chars)
        if not self._send({"op": "run", "id": nonce, "code": code}):
            self._kill()
            return "[ERROR] The Python process stopped; its variables are lost. Run the code again."
        marker = f"{MARK}{nonce} "
        deadline = time.monotonic() + self.limits.timeout_s
        interrupted_at: float | None = None
        note = ""
        while True:
            outcome, ended = self._collect(output, marker, deadline if interrupted_at is None
                                           else interrupted_at + self.limits.interrupt_grace_s)
            if outcome is not None:
                break
            if ended:       # the process is gone: killed by a limit, os._exit, a crash
                code_ = None
                if self._proc is not None:
                    try:
                        code_ = self._proc.wait(2)
                    except subprocess.TimeoutExpired:
                        code_ = None
                self._kill()
                return self._finish(output, None, "[ERROR] The Python process ended"
                                    + (f" ({_describe_exit(code_)})" if code_ is not None else "")
                                    + "; its variables are lost.")
            if interrupted_at is None:
                log.info("python run exceeded %.0f s: interrupting", self.limits.timeout_s)
                interrupted_at = time.monotonic()
                note = f"[ERROR] Timed out after {self.limits.timeout_s:g} seconds; the run was interrupted."
                self._send({"op": "interrupt", "id": nonce})
                continue
            log.warning("python kernel ignored the interrupt: killing it")
            self._kill()
            output.add(self._take_all())     # what it printed last (held back while a marker could be arriving)
            return self._finish(output, None, f"[ERROR] Timed out after {self.limits.timeout_s:g} seconds; the "
                                "Python process did not stop and was restarted, so its variables are lost.")
        status = outcome.get("status")
        error = outcome.get("error") if status == "error" else None
        if note:
            error = None if error and error.startswith("KeyboardInterrupt") else error
        return self._finish(output, error, note or None)

    def _collect(self, output: _Output, marker: str, until: float) -> tuple[dict | None, bool]:
        """Move output into `output` until the run's outcome line, `until`, or the end of the process."""
        with self._cond:
            while True:
                at = self._buffer.find(marker)
                if at >= 0 and "\n" in self._buffer[at:]:
                    end = self._buffer.index("\n", at)
                    before = self._buffer[:at]
                    if before.endswith("\n"):
                        before = before[:-1]        # the newline the kernel writes before its marker
                    output.add(before)
                    line = self._buffer[at + len(marker):end]
                    self._buffer = self._buffer[end + 1:]
                    self._cond.notify_all()
                    try:
                        return json.loads(line), False
                    except ValueError:
                        return {"status": "error", "error": "the kernel's answer was garbled"}, False
                keep = len(marker) + 80          # a marker may be arriving in pieces
                if len(self._buffer) > keep:
                    output.add(self._buffer[:-keep])
                    self._buffer = self._buffer[-keep:]
                    self._cond.notify_all()
                if self._eof:
                    output.add(self._buffer)
                    self._buffer = ""
                    return None, True
                now = time.monotonic()
                if now >= until:
                    return None, False
                self._cond.wait(min(0.25, until - now))

    @staticmethod
    def _finish(output: _Output, error: str | None, note: str | None) -> str:
        parts = [output.text()]
        if error:
            parts.append(error)
        if note:
            parts.append(note)
        text = "\n".join(p.rstrip("\n") for p in parts if p and p.strip())
        return text + "\n" if text else NO_OUTPUT


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = {"SIGKILL": "killed, perhaps for using too much memory or CPU time",
                "SIGXCPU": "it used up its CPU time", "SIGSEGV": "it crashed"}.get(name, "")
        return f"{name}{': ' + hint if hint else ''}"
    return f"exit status {code}"


def code_from_call(text: str) -> str:
    """The code of a `python` call: the raw text, or the one string in a JSON object the model sent instead."""
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            value = json.loads(stripped)
        except ValueError:
            return text
        if isinstance(value, dict):
            if isinstance(value.get("code"), str):
                return value["code"]
            strings = [v for v in value.values() if isinstance(v, str)]
            if len(value) == 1 and strings:
                return strings[0]
    return text


__all__ = ["NO_OUTPUT", "PythonSession", "SandboxError", "SandboxLimits", "code_from_call"]
