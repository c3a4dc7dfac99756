"""`make screenshots`: PNGs of the main window (light and dark) with a streamed reply and its reasoning.

Runs the real window, controller, worker thread and history store (in a temporary folder) with
the scripted FakeEngine, offscreen. Usage: python -m tests.app.screenshots [out_dir]
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402

from app.application import Application  # noqa: E402
from app.history.store import HistoryStore  # noqa: E402
from app.settings import SettingsStore  # noqa: E402
from tests.app.fakes import FakeEngine, FakeFactory  # noqa: E402
from tests.app.qt_wait import wait_until  # noqa: E402

ANALYSIS = ["The user wants ", "a function that ", "checks primes. ", "Trial division up to √n ",
            "is simple and fast enough. ", "Mention the complexity."]
FINAL = ["Here is a small, ", "readable **prime check**:\n\n", "```python\n", "def is_prime(n: int) -> bool:\n",
         "    if n < 2:\n", "        return False\n", "    i = 2\n", "    while i * i <= n:\n",
         "        if n % i == 0:\n", "            return False\n", "        i += 1\n", "    return True\n", "```\n\n",
         "It runs in `O(√n)` time.\n\n", "- Even numbers could be skipped\n", "- For many queries, use a sieve"]


SIZE = (1100, 760)




def shoot(qapp: QApplication, out: Path, theme: str, root: Path) -> list[Path]:
    settings = SettingsStore(root / f"{theme}-settings.json")
    settings.update(theme=theme)
    store = HistoryStore(root / f"{theme}.sqlite3")
    gate = threading.Event()
    engine = FakeEngine(analysis=ANALYSIS, final=FINAL, delay=0.12, gate=gate)
    application = Application(qapp, store=store, settings=settings, engine_factory=FakeFactory(engine))
    window, c = application.window, application.controller
    window.resize(*SIZE)
    application.start(autoload=False)
    shots: list[Path] = []
    if theme == "light":  # first start: no model yet
        for _ in range(5):
            qapp.processEvents()
        path = out / f"{theme}-first-start.png"
        window.grab().save(str(path))
        shots.append(path)
    c.load_model(Path("/models/gpt-oss-20b"))
    wait_until(qapp, lambda: c.model is not None)
    # An older chat in the sidebar, so the list is not empty.
    old = store.create_conversation()
    store.add_message(old.id, None, "user", "Summarise the harmony response format")
    c.conversations_changed.emit()
    gate.set()
    c.send("Write a Python function that checks whether a number is prime.")
    wait_until(qapp, lambda: c.turn is not None and len(c.turn.analysis) > 60)
    for _ in range(5):
        qapp.processEvents()
        time.sleep(0.04)
    path = out / f"{theme}-thinking.png"
    window.grab().save(str(path))
    shots.append(path)
    wait_until(qapp, lambda: c.turn is None)
    for _ in range(5):
        qapp.processEvents()
        time.sleep(0.02)
    path = out / f"{theme}-reply.png"
    window.grab().save(str(path))
    shots.append(path)
    reply = window.chat.widgets[-1]
    reply.reasoning_toggle.setChecked(True)  # expand the finished reasoning block
    for _ in range(5):
        qapp.processEvents()
    path = out / f"{theme}-reply-reasoning-open.png"
    window.grab().save(str(path))
    shots.append(path)
    if theme == "light":
        shots += shoot_extras(qapp, out, theme, application, engine)
        settings.update(offline=True)  # the panel must not reach the network here
        window.models_action.trigger()
        dialog = window._models_dialog
        if dialog is not None:
            for _ in range(10):
                qapp.processEvents()
            path = out / f"{theme}-models.png"
            dialog.grab().save(str(path))
            shots.append(path)
            dialog.close()
        from app.widgets.settings_dialog import SettingsDialog

        settings_dialog = SettingsDialog(settings.settings, window)
        settings_dialog.show()
        for _ in range(10):
            qapp.processEvents()
        path = out / f"{theme}-settings.png"
        settings_dialog.grab().save(str(path))
        shots.append(path)
        settings_dialog.close()
    window.close()
    application.shutdown()
    return shots


def shoot_extras(qapp: QApplication, out: Path, theme: str, application: Application,
                 engine: FakeEngine) -> list[Path]:
    """A reply cut off by the length limit (its note), a download in the status bar, the memory warning."""
    from engine.fit import MemoryShortfall
    from app.models.catalog import entry_for
    from app.models.downloader import ProgressSnapshot
    from app.models.events import DownloadProgress

    window, c = application.window, application.controller
    engine.delay = 0.0
    engine.finish_reason = "length"
    c.send("And a sieve?")
    wait_until(qapp, lambda: c.turn is None)
    engine.finish_reason = "stop"
    if application.models is not None:
        gb = 1000**3
        application.models._emit(DownloadProgress("openai/gpt-oss-120b", ProgressSnapshot(
            int(23.4 * gb), int(65.3 * gb), 48e6, 870.0, "model-00003-of-00014.safetensors", int(23.4 * gb))))
    for _ in range(10):
        qapp.processEvents()
        time.sleep(0.01)
    shots = [out / f"{theme}-cut-off-and-downloading.png"]
    window.grab().save(str(shots[-1]))
    entry = entry_for("openai/gpt-oss-120b")
    assert entry is not None
    context = application.settings.settings.context_length
    shortfall = MemoryShortfall("gpt-oss-120b", context, entry.config.weight_bytes(),
                                entry.config.kv_cache_bytes(context), 21 * 1000**3, 32 * 1000**3)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QMessageBox

    def grab_box() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            shots.append(out / f"{theme}-memory-warning.png")
            box.grab().save(str(shots[-1]))
            box.reject()
        else:
            QTimer.singleShot(20, grab_box)

    QTimer.singleShot(50, grab_box)
    window.ask_load_anyway(shortfall)
    return shots


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    qapp = QApplication.instance() or QApplication(argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LANTERN_DATA_DIR"] = str(Path(tmp) / "data")  # the models folder of the panel shot
        for theme in ("light", "dark"):
            for shot in shoot(qapp, out, theme, Path(tmp)):
                print(shot)
        for shot in shoot_progress_and_recovery(qapp, out, Path(tmp)) + shoot_rich_reply(qapp, out, Path(tmp)):
            print(shot)
    return 0



def shoot_progress_and_recovery(qapp: QApplication, out: Path, root: Path) -> list[Path]:
    """Issue 12's screens: prefill progress in the reply, live speed and context while it streams, a
    refused model folder that leaves the loaded model loaded, and the notice after a crash."""
    from app.history.streaming import StreamingSaver
    from engine.errors import ModelFilesError

    shots: list[Path] = []
    settings = SettingsStore(root / "p-settings.json")
    settings.update(theme="light")
    store = HistoryStore(root / "p.sqlite3")
    engine = FakeEngine(analysis=ANALYSIS, final=FINAL, delay=0.15, prompt_tokens=2380, prefill_chunk=256,
                        prefill_delay=0.35)
    factory = FakeFactory(engine)
    application = Application(qapp, store=store, settings=settings, engine_factory=factory)
    window, c = application.window, application.controller
    window.resize(*SIZE)
    application.start(autoload=False)
    gate = threading.Event()
    factory.load_gate = gate                      # the load waits after its "Reading weights" stage
    c.load_model(Path("/models/gpt-oss-20b"))
    wait_until(qapp, lambda: window.chat.loading_card.isVisible() and "Reading" in window.chat.loading_card.label.text())
    for _ in range(5):
        qapp.processEvents()
        time.sleep(0.02)
    shots.append(out / "loading-stages.png")
    window.grab().save(str(shots[-1]))
    factory.load_gate = None
    gate.set()
    wait_until(qapp, lambda: c.model is not None)
    c.send("Here is my whole thesis chapter; what are its three weakest arguments? " + "(long text) " * 40)
    wait_until(qapp, lambda: c.turn is not None and c.turn.stats is not None and c.turn.stats.prefill_done >= 1000)
    for _ in range(5):
        qapp.processEvents()
        time.sleep(0.02)
    shots.append(out / "prefill-progress.png")
    window.grab().save(str(shots[-1]))
    wait_until(qapp, lambda: c.turn is not None and c.turn.stats is not None and c.turn.stats.phase == "decode"
               and c.turn.stats.completion_tokens > 12)
    for _ in range(5):
        qapp.processEvents()
        time.sleep(0.02)
    shots.append(out / "live-stats.png")
    window.grab().save(str(shots[-1]))
    engine.delay = 0.0
    wait_until(qapp, lambda: c.turn is None)
    # a folder that is not a model: refused before anything is unloaded
    factory.refuse = ModelFilesError("model-00002-of-00003.safetensors is truncated (expected 4,625,017,504 bytes, "
                                     "found 1,073,741,824)", path="/models/gpt-oss-120b/model-00002-of-00003.safetensors")
    application.model_controller.load_now(Path("/models/gpt-oss-120b"))
    wait_until(qapp, lambda: application.model_controller.loading is None and window.chat.banner.isVisible())
    for _ in range(5):
        qapp.processEvents()
        time.sleep(0.02)
    shots.append(out / "safe-model-switch.png")
    window.grab().save(str(shots[-1]))
    # a reply cut off by a crash: left "streaming" in the history, found at the next start
    cid = c.conversation_id
    saver = StreamingSaver.start(store, cid, c.thread[-1].id)
    saver.add("analysis", "The user asks for a summary. Keep it short.")
    saver.add("final", "In short: the chapter argues three things. First, that the")
    saver.flush()
    window.close()
    application.shutdown()   # closes the store; the reply stays "streaming" as after a kill
    application = Application(qapp, store=HistoryStore(root / "p.sqlite3"), settings=settings,
                              engine_factory=FakeFactory(FakeEngine()))
    application.window.resize(*SIZE)
    application.start(autoload=False)
    for _ in range(20):
        qapp.processEvents()
        time.sleep(0.02)
    shots.append(out / "crash-notice.png")
    application.window.grab().save(str(shots[-1]))
    application.window.close()
    application.shutdown()
    return shots



RICH = ["Here is the comparison:\n\n", "| model | active | total |\n|---|---|---|\n", "| gpt-oss-20b | 3.6 B | 21 B |\n",
        "| gpt-oss-120b | 5.1 B | 117 B |\n\n", "The softmax with a sink is $p_i = \\frac{e^{s_i}}{e^{b} + \\sum_j e^{s_j}}$, ",
        "and the total is\n\n$$\\sum_{i=1}^{n} p_i = 1 - \\frac{e^{b}}{e^{b} + \\sum_j e^{s_j}}$$\n\n",
        "A long hash wraps inside its block: " + "0123456789abcdef" * 12 + "\n\n",
        "```text\n" + "x" * 220 + "\n```\n"]


def shoot_rich_reply(qapp: QApplication, out: Path, root: Path) -> list[Path]:
    """A table with borders, inline and display math, long unbroken lines, a long pasted message folded."""
    settings = SettingsStore(root / "r-settings.json")
    settings.update(theme="light")
    engine = FakeEngine(analysis=["Compare the two."], final=RICH)
    application = Application(qapp, store=HistoryStore(root / "r.sqlite3"), settings=settings,
                              engine_factory=FakeFactory(engine))
    window, c = application.window, application.controller
    window.resize(*SIZE)
    application.start(autoload=False)
    c.load_model(Path("/models/gpt-oss-20b"))
    wait_until(qapp, lambda: c.model is not None)
    pasted = "\n".join(f"{i:>4}  log line {i}: request served in {i % 17} ms" for i in range(400))
    c.send("Compare the two models; my server log is below.\n" + pasted)
    wait_until(qapp, lambda: c.turn is None)
    end = time.monotonic() + 10
    while time.monotonic() < end and any(w._math_pending for w in window.chat.widgets):
        qapp.processEvents()
        time.sleep(0.05)
    for _ in range(10):
        qapp.processEvents()
        time.sleep(0.02)
    shots = [out / "table-math-long-lines.png"]
    window.grab().save(str(shots[-1]))
    window.close()
    application.shutdown()
    return shots


if __name__ == "__main__":
    sys.exit(main(sys.argv))
