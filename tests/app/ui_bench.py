"""`make bench-ui`: how long the GUI thread stalls in the moments a user notices a frozen window.

Runs the real window, controller, worker thread and history (in a temporary folder, offscreen unless
QT_QPA_PLATFORM says otherwise) with a heartbeat timer on the GUI thread (tests/app/heartbeat.py) and
prints, per case, the worst gap and how many gaps were over 16 ms (a frame) and 50 ms (a stall):

* model load: the real engine on a random 6-layer checkpoint (the first load also imports torch);
* streaming a reply and its finish: the real engine at the tiny checkpoint's speed, which is far
  faster than a real model's (so more text per second reaches the window), and a scripted stream of
  Markdown with code blocks at several hundred pieces a second;
* sending a pasted 50,000-character message (paste, Enter, the start of the reply);
* opening a chat of 500 messages;
* searching a history of 2,000 chats (typing the query).

The history holds the 2,000 chats during every case, as a long-time user's would.

    python -m tests.app.ui_bench [--repeat N] [--json FILE] [--cases a,b,...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from tests.app.heartbeat import TABLE_HEADER, Gaps, Heartbeat, StallSampler, spin_for, spin_until  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHATS = 2000
LONG_CHAT = 500
PASTE_CHARS = 50_000
BENCH_LAYERS = 6

WORDS = ("the lighthouse keeper wrote that a small boat can cross the bay when the tide is low and the wind "
         "comes from the west but never in winter because storms arrive without warning from the sea").split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def markdown_reply(rng: random.Random, paragraphs: int = 4) -> str:
    """A reply shaped like gpt-oss's: paragraphs, a list, a code block, some inline code."""
    parts = [_sentence(rng, rng.randint(12, 40)) for _ in range(paragraphs)]
    parts.insert(1, "\n".join(f"- {_sentence(rng, rng.randint(4, 10))} `x{i}`" for i in range(3)))
    parts.insert(2, "```python\n" + "\n".join(f"def f{i}(x: int) -> int:\n    return x * {i} + 1" for i in range(4))
                 + "\n```")
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------- fixtures

def write_checkpoint(folder: Path) -> Path:
    """A random 6-layer checkpoint, written by a child process (so this one has not imported torch)."""
    if (folder / "config.json").is_file():
        return folder
    code = ("import sys; from pathlib import Path; from tests.checkpoints import TinySpec, write_checkpoint; "
            f"write_checkpoint(Path(sys.argv[1]), TinySpec(num_hidden_layers={BENCH_LAYERS}), seed=1)")
    subprocess.run([sys.executable, "-c", code, str(folder)], cwd=REPO, check=True)
    return folder


def populate_history(path: Path, chats: int = CHATS, long_chat: int = LONG_CHAT, seed: int = 0) -> int:
    """`chats` small chats and one of `long_chat` messages (returned: its id), in one transaction."""
    from app.history.store import HistoryStore

    rng = random.Random(seed)
    store = HistoryStore(path)
    try:
        now = time.time() - 86400 * 400
        with store._tx() as db:   # one transaction: the store's own methods commit each row
            for c in range(chats):
                t = now + c * 3600
                title = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {c}"
                cid = db.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)",
                                 (title, t, t)).lastrowid
                parent = None
                for k in range(4):
                    role = "user" if k % 2 == 0 else "assistant"
                    text = _sentence(rng, 12) if role == "user" else markdown_reply(rng, 2)
                    parent = db.execute(
                        "INSERT INTO messages (conversation_id, parent_id, role, channel, content, status, created_at)"
                        " VALUES (?, ?, ?, ?, ?, 'done', ?)",
                        (cid, parent, role, None if role == "user" else "final", text, t + k)).lastrowid
                db.execute("UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (parent, cid))
            t = now + chats * 3600
            cid = db.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)",
                             ("A very long chat", t, t)).lastrowid
            parent = None
            for k in range(long_chat):
                role = "user" if k % 2 == 0 else "assistant"
                text = _sentence(rng, 20) if role == "user" else markdown_reply(rng, 3)
                parent = db.execute(
                    "INSERT INTO messages (conversation_id, parent_id, role, channel, content, reasoning, status,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, 'done', ?)",
                    (cid, parent, role, None if role == "user" else "final", text,
                     "" if role == "user" else _sentence(rng, 30), t + k)).lastrowid
            db.execute("UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (parent, cid))
        return int(cid)
    finally:
        store.close()


class Bench:
    """One Application on a copy of the populated history; each case returns the gaps it saw."""

    def __init__(self, root: Path, model_dir: Path, template_db: Path, long_chat_id: int) -> None:
        from app.application import Application
        from app.history.store import HistoryStore
        from app.settings import SettingsStore

        self.root = root
        self.model_dir = model_dir
        self.long_chat_id = long_chat_id
        db = root / "history.sqlite3"
        shutil.copy(template_db, db)
        settings = SettingsStore(root / "settings.json")
        settings.update(device="cpu", context_length=16384, max_tokens=600, temperature=0.0, cpu_threads=1)
        self.settings = settings
        qapp = QApplication.instance()
        assert isinstance(qapp, QApplication)
        self.qapp = qapp
        self.factory = _Factory()
        self.app = Application(qapp, store=HistoryStore(db), settings=settings, engine_factory=self.factory)
        self.app.window.resize(1180, 780)
        if os.environ.get("LANTERN_BENCH_SWITCH_INTERVAL"):   # experiments: the app sets its own
            sys.setswitchinterval(float(os.environ["LANTERN_BENCH_SWITCH_INTERVAL"]))
        self.app.start(autoload=False, resume_downloads=False)
        self.heart = Heartbeat()
        spin_until(lambda: self.window.background.pending == 0, 30, what="start-up work done")  # renderer warm-up
        spin_for(0.5)

    @property
    def controller(self):  # noqa: ANN201
        return self.app.controller

    @property
    def window(self):  # noqa: ANN201
        return self.app.window

    @contextmanager
    def measured(self, label: str, out: list[Gaps]) -> Iterator[None]:
        spin_for(0.2)   # let earlier work settle
        self.heart.start()
        yield
        out.append(self.heart.stop(label))

    def close(self) -> None:
        self.app.shutdown()
        self.app.window.close()

    # ---------------------------------------------------------------- cases

    def case_load(self, out: list[Gaps], label: str) -> None:
        c = self.controller
        with self.measured(label, out):
            c.load_model(self.model_dir)
            spin_until(lambda: c.model is not None and c.loading is None, 120, what="model loaded")
            spin_for(0.3)

    def _stream(self, out: list[Gaps], label: str, text: str, timeout: float = 120) -> None:
        c = self.controller
        finished: list[float] = []
        c.turn_finished.connect(lambda *_: finished.append(time.perf_counter()))
        with self.measured(label, out):
            assert c.send(text), "send refused"
            spin_until(lambda: bool(finished), timeout, what="reply finished")
            spin_for(0.5)
        gaps = out.pop()
        out.extend(split_at_finish(self.heart, gaps, finished[0], label))

    def case_stream_real(self, out: list[Gaps]) -> None:
        self.ensure_real_model()
        self.controller.new_chat()
        self._stream(out, "stream (tiny model)", "Tell me a long story about a lighthouse.")

    def case_stream_markdown(self, out: list[Gaps]) -> None:
        from tests.app.fakes import FakeEngine

        rng = random.Random(7)
        reply = "\n\n".join(markdown_reply(rng, 4) for _ in range(6))   # ~ 8k characters
        pieces = [reply[i:i + 4] for i in range(0, len(reply), 4)]
        engine = FakeEngine(analysis=[_sentence(rng, 3) + " " for _ in range(60)], final=pieces, delay=0.002)
        self.factory.scripted = engine
        self.controller.load_model(Path("/models/scripted"))
        spin_until(lambda: self.controller.model is not None and self.controller.loading is None, 10)
        self.controller.new_chat()
        self._stream(out, "stream (scripted Markdown)", "Explain with code.")

    def ensure_real_model(self) -> None:
        """Load the random checkpoint unless it is loaded (not measured: a case run on its own)."""
        c = self.controller
        if c.model is None or c.model.path != self.model_dir:
            c.load_model(self.model_dir)
            spin_until(lambda: c.model is not None and c.loading is None, 120, what="model loaded")

    def case_paste(self, out: list[Gaps]) -> None:
        self.ensure_real_model()
        rng = random.Random(3)
        text = ""
        while len(text) < PASTE_CHARS:
            text += _sentence(rng, 14) + ("\n\n" if rng.random() < 0.1 else " ")
        text = text[:PASTE_CHARS]
        c = self.controller
        c.new_chat()
        edit = self.window.chat.composer.edit
        with self.measured("send a 50k-character message", out):
            edit.setPlainText(text)
            spin_for(0.2)
            self.window.chat.composer._on_send()
            spin_until(lambda: c.turn is not None, 10, what="reply started")
            spin_for(1.0)
        c.stop()
        spin_until(lambda: c.turn is None, 120, what="reply stopped")

    def case_open_long(self, out: list[Gaps]) -> None:
        with self.measured("open a chat of 500 messages", out):
            self.controller.open_conversation(self.long_chat_id)
            spin_for(1.5)

    def case_search(self, out: list[Gaps]) -> None:
        search = self.window.sidebar.search
        search.clear()
        spin_for(0.5)
        with self.measured("search 2,000 chats", out):
            for ch in "lighthouse keeper":
                search.insert(ch)
                spin_for(0.08)
            spin_for(1.0)
            search.clear()
            spin_for(1.0)


class _Factory:
    """The real engine, or the scripted one for the folder named "scripted"."""

    def __init__(self) -> None:
        self.scripted = None

    def __call__(self, request, progress):  # noqa: ANN001, ANN204
        from app.worker import default_engine_factory

        if Path(request.model_dir).name != "scripted" or self.scripted is None:
            return default_engine_factory(request, progress)
        self.scripted.path = Path(request.model_dir)
        self.scripted.max_context = request.max_context
        return self.scripted


def split_at_finish(heart: Heartbeat, whole: Gaps, finished_at: float, label: str) -> list[Gaps]:
    """The stream's gaps before the reply finished, and those ending after it (the finish)."""
    return [heart.gaps(label, until=finished_at), heart.gaps(label.replace("stream", "reply finish"), finished_at)]


CASES: dict[str, Callable[[Bench, list[Gaps]], None]] = {
    "load": lambda b, out: b.case_load(out, "model load (first: imports torch)" if "torch" not in sys.modules
                                       else "model load (torch imported)"),
    "reload": lambda b, out: b.case_load(out, "model load (again)"),
    "stream": Bench.case_stream_real,
    "markdown": Bench.case_stream_markdown,
    "paste": Bench.case_paste,
    "open": Bench.case_open_long,
    "search": Bench.case_search,
}


def run(names: list[str], repeat: int = 1, *, why: bool = False) -> list[tuple[str, Gaps]]:
    """(case name, gaps) for each row, in order (a stream gives two rows: the stream and its finish)."""
    cases: list[str] = []
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    assert qapp is not None
    cache = Path(os.environ.get("LANTERN_BENCH_CACHE", Path(tempfile.gettempdir()) / "lantern-bench-ui"))
    cache.mkdir(parents=True, exist_ok=True)
    model_dir = write_checkpoint(cache / f"random-{BENCH_LAYERS}-layers")
    results: list[Gaps] = []
    with tempfile.TemporaryDirectory(prefix="lantern-bench-ui-") as tmp:
        os.environ["LANTERN_DATA_DIR"] = str(Path(tmp) / "data")
        os.environ["LANTERN_CONFIG_DIR"] = str(Path(tmp) / "config")
        template = Path(tmp) / "template.sqlite3"
        long_id = populate_history(template)
        for r in range(repeat):
            root = Path(tmp) / f"run{r}"
            root.mkdir()
            bench = Bench(root, model_dir, template, long_id)
            try:
                for name in names:
                    sampler = StallSampler(bench.heart) if why else None
                    if sampler is not None:
                        sampler.start()
                    before = len(results)
                    CASES[name](bench, results)
                    cases.extend([name] * (len(results) - before))
                    if sampler is not None:
                        sampler.stop()
                        print(f"===== {name}\n{sampler.report()}", flush=True)
            finally:
                bench.close()
    return list(zip(cases, results))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.app.ui_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="run every case this many times (fresh window)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {','.join(CASES)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--why", action="store_true", help="print the threads' stacks during each stall")
    args = parser.parse_args(argv[1:])
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown cases: {unknown}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = run(cases, args.repeat, why=args.why)
    after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"GUI-thread heartbeat every 5 ms; platform {os.environ.get('QT_QPA_PLATFORM')}; "
          f"{os.cpu_count()} CPUs, load average {load:.2f} before, {after:.2f} after")
    print(TABLE_HEADER)
    for _case, g in results:
        print(g.row())
    if args.json is not None:
        args.json.write_text(json.dumps([{"case": case, **asdict(g)} for case, g in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
