"""PNGs of the Models panel's dialogs and states, against the fake hub, offscreen.

    python -m tests.app.models_screenshots [out_dir]

The "will not fit" question, the cancel question, a download waiting to retry (hub down), a
download that found the repo changed on the hub, the last hash mismatch, and Verify's result on
an imported model next to a folder copied in by hand.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget  # noqa: E402

from app.models import network  # noqa: E402
from app.models.fit import SystemMemory  # noqa: E402
from app.models.manager import ModelManager  # noqa: E402
from app.widgets.models_panel import ModelManagerPanel  # noqa: E402
from tests.app.fakehub import FakeHub, changed_shard, tiny_repo, write_repo  # noqa: E402
from tests.app.qt_wait import settle, wait_until  # noqa: E402

REPO = "openai/gpt-oss-20b"
LAPTOP = SystemMemory(25 * 1000**3, None)          # the 25 GB machine of the issue






def grab(widget: QWidget, path: Path, shots: list[Path]) -> None:
    widget.grab().save(str(path))
    shots.append(path)


def grab_next_box(path: Path, shots: list[Path], press: str) -> None:
    """When the next message box is up: save it, then press the button labelled `press`."""
    def look() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            box.grab().save(str(path))
            shots.append(path)
            button = next(b for b in box.buttons() if b.text().replace("&", "") == press)
            button.click()
        else:
            QTimer.singleShot(20, look)

    QTimer.singleShot(50, look)


def panel_on(manager: ModelManager) -> ModelManagerPanel:
    panel = ModelManagerPanel(manager)
    panel.resize(760, 900)
    panel.show()
    return panel


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "screenshots/models")
    out.mkdir(parents=True, exist_ok=True)
    qapp = QApplication.instance() or QApplication(argv[:1])
    network.set_offline(False)
    shots: list[Path] = []
    files = tiny_repo(shard_bytes=2_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hub = FakeHub(repos={REPO: files}, delay_per_chunk_s=0.03, chunk=64 * 1024)
        try:
            # 1. A model that will not fit: asked before anything is fetched.
            m = ModelManager(root / "a", endpoint=hub.url, system=LAPTOP)
            panel = panel_on(m)
            settle(qapp)
            grab_next_box(out / "will-not-fit-question.png", shots, "Don't download")
            panel.cards["openai/gpt-oss-120b"].download_btn.click()
            settle(qapp)

            # 2. Cancel: the default keeps the download.
            panel.cards[REPO].download_btn.click()
            wait_until(qapp, lambda: (s := m.job_status(REPO)) is not None and s.progress is not None
                       and s.progress.done_bytes > 1_000_000)
            grab_next_box(out / "cancel-question.png", shots, "Keep downloading")
            panel.cards[REPO].cancel_btn.click()
            settle(qapp)

            # 3. The repo changes on the hub between quitting and the next start.
            m.close()
            panel.close()
            hub.publish(REPO, changed_shard(files, "model-00001-of-00002.safetensors"))
            m = ModelManager(root / "a", endpoint=hub.url, system=LAPTOP)
            panel = panel_on(m)
            wait_until(qapp, lambda: "changed on the hub" in panel.cards[REPO].status.text())
            settle(qapp, 20)
            grab(panel, out / "revision-changed.png", shots)
            m.close()
            panel.close()

            # 4. The hub goes away: waiting to retry, with the button the text names.
            hub.down = True
            m = ModelManager(root / "a", endpoint=hub.url, system=LAPTOP, max_retries=0)
            panel = panel_on(m)
            wait_until(qapp, lambda: "Cannot reach the hub" in panel.cards[REPO].status.text())
            settle(qapp)
            grab(panel, out / "hub-unreachable-retrying.png", shots)
            m.close()
            panel.close()
            hub.down = False

            # 5. A file that keeps arriving damaged.
            hub.delay_per_chunk_s = 0.0
            hub.corrupt_always.add("model-00002-of-00002.safetensors")
            m = ModelManager(root / "b", endpoint=hub.url, system=LAPTOP, retry_backoff_s=0.01)
            panel = panel_on(m)
            panel.cards[REPO].download_btn.click()
            wait_until(qapp, lambda: "arrived damaged twice" in panel.cards[REPO].status.text())
            settle(qapp)
            grab(panel, out / "hash-mismatch-final.png", shots)
            m.close()
            panel.close()

            # 6. Verify on an imported model, and a folder copied in by hand showing up.
            m = ModelManager(root / "c", endpoint=hub.url, system=LAPTOP)
            (root / "c").mkdir()
            panel = panel_on(m)
            m.import_folder(write_repo(root / "mine" / "my-gpt-oss", tiny_repo(seed=3)))
            settle(qapp)
            write_repo(root / "c" / "copied-by-hand", tiny_repo(seed=4))
            wait_until(qapp, lambda: any(getattr(r, "model", None) is not None and r.model.name == "copied-by-hand"
                                         for r in panel.local_rows))
            row = next(r for r in panel.local_rows if getattr(r, "model", None) is not None and r.model.imported)
            row.verify_btn.click()
            wait_until(qapp, lambda: any("checked" in getattr(getattr(r, "result_label", None), "text", str)()
                                         for r in panel.local_rows))
            settle(qapp)
            grab(panel, out / "verify-imported-and-hand-copied.png", shots)
            m.close()
            panel.close()
        finally:
            hub.close()
    for shot in shots:
        print(shot)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
