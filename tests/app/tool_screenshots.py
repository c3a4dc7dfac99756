"""PNGs of a tool round trip in the window, from the scripted harmony engine (offscreen).

    python -m tests.app.tool_screenshots [out_dir]     (default: screenshots/tools)

The real window, controller, worker thread, history, index and Python sandbox; only the model is
scripted (tests/app/tools_support.py): search the attached policy, open it, run Python after
approval, answer with citations; then the cited lines in the document viewer.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402
from tests.app.qt_wait import wait_until  # noqa: E402

SIZE = (1180, 820)


def pump(qapp: QApplication, seconds: float = 0.15) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        qapp.processEvents()
        time.sleep(0.01)




def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "screenshots/tools")
    out.mkdir(parents=True, exist_ok=True)
    qapp = QApplication.instance() or QApplication(argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["LANTERN_DATA_DIR"] = str(root / "data")
        from app.application import Application
        from app.history.store import HistoryStore
        from app.settings import SettingsStore
        from tests.app.tools_support import CARRY_PAGE_LINE, scripted_round_trip, write_policy
        from tests.tools.harmony_fake import scripted_factory

        engine = scripted_round_trip()
        engine.delay = 0.004
        settings = SettingsStore(root / "settings.json")
        settings.update(theme="light")
        application = Application(qapp, store=HistoryStore(root / "h.sqlite3"), settings=settings,
                                  engine_factory=scripted_factory(engine))
        window, c, ui = application.window, application.controller, application.tools_ui
        window.resize(*SIZE)
        application.start(autoload=False)
        c.load_model(Path("/models/gpt-oss-20b"))
        wait_until(qapp, lambda: c.model is not None)
        policy = write_policy(root / "Documents")
        ui.attach([str(policy)])
        application.tools.wait_idle()
        wait_until(qapp, lambda: not application.tools.busy)
        shots = []

        def grab_box() -> None:
            box = QApplication.activeModalWidget()
            if isinstance(box, QMessageBox):
                shots.append(out / "tools-python-switch.png")
                box.grab().save(str(shots[-1]))
                box.accept()
                yes = next(b for b in box.buttons() if b.text() == "Turn on")
                yes.click()
            else:
                QTimer.singleShot(20, grab_box)

        QTimer.singleShot(50, grab_box)
        ui.bar.python_switch.click()
        pump(qapp)
        c.send("How many of my leave days carry over? I have used 21 of 25.")
        wait_until(qapp, lambda: c.turn is not None and c.turn.pending_approval is not None)
        pump(qapp, 0.4)
        shots.append(out / "tools-approval.png")
        window.grab().save(str(shots[-1]))
        window.chat.live.tool_blocks.blocks[-1].run_button.click()
        wait_until(qapp, lambda: c.turn is None)
        pump(qapp, 0.4)
        reply = window.chat.widgets[-1]
        reply.tool_blocks.blocks[1].toggle.setChecked(True)      # the opened page
        reply.tool_blocks.blocks[2].toggle.setChecked(True)      # the python run
        pump(qapp, 0.3)
        window.chat.scroll_to_bottom()
        pump(qapp, 0.3)
        shots.append(out / "tools-answer.png")
        window.grab().save(str(shots[-1]))
        viewer = ui.open_citation(reply.message_id, 1, CARRY_PAGE_LINE, CARRY_PAGE_LINE)
        pump(qapp, 0.3)
        if viewer is not None:
            shots.append(out / "tools-document-viewer.png")
            viewer.grab().save(str(shots[-1]))
            viewer.close()
        for shot in shots:
            print(shot)
        window.close()
        application.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
