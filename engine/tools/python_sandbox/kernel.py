"""The Python kernel that runs the model's code: one process per chat, inside the sandbox.

Standard library only, run as a script (`python -I -u kernel.py CONFIG_JSON`): the sandbox shows it
nothing of Lantern. The session in `session.py` starts it and talks to it over two pipes:

* stdin: one JSON request per line, read by a thread: {"op": "run", "id": NONCE, "code": SOURCE}
  queues a cell; {"op": "interrupt", "id": NONCE} raises KeyboardInterrupt in that cell if it runs, or
  ends it unrun if it has not started yet (on a busy machine a timeout can come before the cell starts);
  {"op": "exit"} ends the kernel.
* stdout (stderr goes to the same pipe): whatever the code prints (also from C code and child
  processes, in order), then, when a cell ends, one line `\\x1e{NONCE} {JSON}\\n` with its outcome:
  {"status": "ok" | "error", "error": traceback text or null}.

The code runs in one namespace that persists between cells, like a notebook: a cell that ends
with an expression prints its repr (when not None). Before any cell runs the kernel applies the
limits in CONFIG (address space, processes, file size, open files, CPU seconds per cell) and,
if started as root inside the sandbox (CONFIG's drop_to_uid), drops to an unprivileged user: a
root process is exempt from the process limit, and should not run the model's code anyway.
"""

from __future__ import annotations

import ast
import json
import linecache
import os
import queue
import signal
import sys
import threading
import traceback

MARK = "\x1e"


class CpuLimitExceeded(Exception):
    """The cell used its CPU seconds (RLIMIT_CPU's soft limit was reached)."""


def _apply_limits(config: dict) -> None:
    import resource

    if (os.getuid() == 0 or os.geteuid() == 0) and config.get("drop_to_uid") is not None:
        uid = int(config["drop_to_uid"])
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if os.getuid() == 0 or os.geteuid() == 0:
            raise SystemExit("refusing to run code as root")

    def lower(which: int, value: int | None) -> None:
        if value is None:
            return
        soft, hard = resource.getrlimit(which)
        hard = value if hard == resource.RLIM_INFINITY else min(hard, value)
        resource.setrlimit(which, (min(value, hard), hard))

    lower(resource.RLIMIT_AS, config.get("memory_bytes"))
    lower(resource.RLIMIT_NPROC, config.get("max_processes"))
    lower(resource.RLIMIT_FSIZE, config.get("max_file_bytes"))
    lower(resource.RLIMIT_NOFILE, config.get("max_open_files"))
    lower(resource.RLIMIT_CORE, 0)
    lower(resource.RLIMIT_CPU, config.get("cpu_seconds_total"))
    if config.get("nice"):
        try:
            os.nice(int(config["nice"]))
        except OSError:
            pass
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # a too-big write fails with an error instead


def _cpu_used() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _set_cell_cpu_limit(seconds: float | None) -> None:
    """Soft RLIMIT_CPU = CPU used so far + `seconds` (the hard limit caps the whole session)."""
    import resource

    if not seconds:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    want = int(_cpu_used() + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (want, hard))


def _on_xcpu(signum: int, frame: object) -> None:
    raise CpuLimitExceeded("the cell used up its CPU time")


def _own_forks() -> list[int]:
    """Processes that are copies of this kernel (forked by a cell, never exec'd), in this session."""
    me = os.getpid()
    try:
        with open("/proc/self/cmdline", "rb") as f:
            cmdline = f.read()
        session = os.getsid(0)
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]
    except OSError:
        return []            # no /proc (macOS): forks are left to the process limit and the kill at the end
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() != cmdline:
                    continue
            if os.getsid(pid) == session:
                out.append(pid)
        except OSError:
            continue
    return out


def _dead_or_forked_children(forks: list[int]) -> list[int]:
    """This kernel's own children that are among `forks` or are dead or dying (a zombie's command line
    reads empty, so _own_forks does not see it): the ones to wait for."""
    me = os.getpid()
    out = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) != me:
                continue
            if pid in forks or fields[0] in (b"Z", b"X"):
                out.append(pid)
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if not f.read():                 # exiting: its memory is gone already
                    out.append(pid)
        except (OSError, IndexError, ValueError):
            continue
    return out


def _reap_forks() -> None:
    """After a cell: end the kernel copies it forked and left running (a fork bomb keeps churning
    within the process limit otherwise), and wait for those that are the kernel's own children, so
    that none stays a zombie holding one of the sandbox's few process slots. Programs it started
    (which exec'd) are left alone."""
    for _ in range(100):
        pids = _own_forks()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in _dead_or_forked_children(pids):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        if not pids:
            break
    try:                                         # and any child already dead (also where there is no /proc)
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


class Kernel:
    def __init__(self, control_fd: int, config: dict) -> None:
        self.pid = os.getpid()
        self.namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
        self.requests: "queue.Queue[dict]" = queue.Queue()
        self.count = 0
        self.cpu_per_cell = config.get("cpu_seconds_per_cell")
        self._control = os.fdopen(control_fd, "r", encoding="utf-8", errors="replace")
        self._lock = threading.Lock()
        self._running_id: str | None = None      # the cell that runs now
        self._interrupted_ids: set[str] = set()  # cells interrupted before they started
        threading.Thread(target=self._read_requests, name="requests", daemon=True).start()

    def _read_requests(self) -> None:
        for line in self._control:
            try:
                request = json.loads(line)
            except ValueError:
                continue
            if request.get("op") == "interrupt":
                self._interrupt(str(request.get("id", "")))
            else:
                self.requests.put(request)
        self.requests.put({"op": "exit"})

    def _interrupt(self, cell_id: str) -> None:
        with self._lock:
            if self._running_id is not None and cell_id in ("", self._running_id):
                os.kill(self.pid, signal.SIGINT)
            elif cell_id:
                self._interrupted_ids.add(cell_id)

    def serve(self) -> None:
        print(MARK + "ready " + json.dumps({"python": sys.version.split()[0]}), flush=True)
        while True:
            request = self.requests.get()
            if request.get("op") != "run":
                break
            status, error = self.run_cell(str(request.get("code", "")), str(request.get("id", "")))
            if os.getpid() != self.pid:      # a child the code forked came back here: it must not answer
                os._exit(0)
            _reap_forks()
            sys.stdout.flush()
            sys.stderr.flush()
            outcome = json.dumps({"status": status, "error": error})
            os.write(1, f"\n{MARK}{request.get('id', '')} {outcome}\n".encode())

    def run_cell(self, code: str, cell_id: str = "") -> tuple[str, str | None]:
        self.count += 1
        filename = f"<cell {self.count}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            with self._lock:
                if cell_id in self._interrupted_ids:
                    self._interrupted_ids.discard(cell_id)
                    return "error", "KeyboardInterrupt: the cell was interrupted before it started"
                self._running_id = cell_id
            _set_cell_cpu_limit(self.cpu_per_cell)
            tree = ast.parse(code, filename, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, filename, "exec"), self.namespace)
            if last is not None:
                value = eval(compile(last, filename, "eval"), self.namespace)
                if value is not None:
                    self.namespace["_"] = value
                    print(repr(value))
            return "ok", None
        except BaseException as exc:  # noqa: BLE001 - everything the code raises is its output
            if os.getpid() != self.pid:
                os._exit(1)
            return "error", self._traceback(exc)
        finally:
            with self._lock:
                self._running_id = None

    @staticmethod
    def _traceback(exc: BaseException) -> str:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next      # the kernel's own frames are not the code's business
        if isinstance(exc, KeyboardInterrupt):
            return "KeyboardInterrupt: the cell was interrupted"
        if isinstance(exc, CpuLimitExceeded):
            return "CpuLimitExceeded: the cell used more CPU time than it is allowed"
        if isinstance(exc, SyntaxError):
            return "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
        return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()


def main(argv: list[str]) -> int:
    config = json.loads(argv[1]) if len(argv) > 1 else {}
    control_fd = os.dup(0)                       # requests come on the original stdin ...
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)                          # ... which the code (and its children) never sees
    os.close(devnull)
    sys.stdin = open(os.devnull, encoding="utf-8")
    _apply_limits(config)
    signal.signal(signal.SIGXCPU, _on_xcpu)
    # An interrupt is a SIGINT that Python turns into KeyboardInterrupt. A process started by one that ignores
    # SIGINT inherits SIG_IGN, and Python then leaves it ignored: every timeout would kill the kernel instead.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = config.get("workdir")
    if workdir:
        os.chdir(workdir)
    sys.argv = [""]
    sys.path[:] = [p for p in sys.path if p and os.path.isdir(p)]
    Kernel(control_fd, config).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
