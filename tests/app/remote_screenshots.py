"""PNGs of the remote-server flow, offscreen: the Add a server dialog (tested, and a self-signed
certificate offered), the Models window's servers section, a chat with a remote model, a remote
model's load stage (with Cancel) and a refused one that leaves the model in use loaded.

Runs the real window with the recorded-stream server on loopback and an in-memory keyring.
Usage: python -m tests.app.remote_screenshots OUT_DIR
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402

from app.application import Application  # noqa: E402
from app.history.store import HistoryStore  # noqa: E402
from app.settings import SettingsStore  # noqa: E402
from tests.app.recorded_server import Recording, RecordedServer  # noqa: E402
from tests.app.recorded_streams import recordings, vllm_chunk, DONE  # noqa: E402
from tests.app.remote_support import memory_keyring  # noqa: E402
from tests.app.qt_wait import settle, wait_until  # noqa: E402

ANSWER = ["A 120-billion-parameter model ", "needs about **65 GB** for its weights, ", "so this laptop sends the ",
          "chat to the workstation instead.\n\n", "- Replies stream as usual\n", "- Stop cancels on the server\n",
          "- History and branches stay here"]
REASONING = ["The user asks why the big model runs elsewhere. ", "Explain memory needs briefly."]






def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    qapp = QApplication.instance() or QApplication(sys.argv)
    root = Path(tempfile.mkdtemp(prefix="lantern-remote-shots-"))
    os.environ["LANTERN_CONFIG_DIR"] = str(root / "config")
    os.environ["LANTERN_DATA_DIR"] = str(root / "data")

    chat_stream = tuple([vllm_chunk({"role": "assistant", "content": ""}, model="openai/gpt-oss-120b")]
                        + [vllm_chunk({"reasoning": t}) for t in REASONING]
                        + [vllm_chunk({"content": t}) for t in ANSWER] + [vllm_chunk({}, "stop"), DONE])
    models = {"openai/gpt-oss-120b": Recording(chat_stream, max_model_len=131072),
              "openai/gpt-oss-20b": Recording(tuple(
                  [vllm_chunk({"role": "assistant", "content": ""})]
                  + [vllm_chunk({"content": t}) for t in ("The 20b model ", "fits in 16 GB, ", "so it could also run ",
                                                           "on this laptop.")]
                  + [vllm_chunk({}, "stop"), DONE]), max_model_len=131072)}
    with memory_keyring(), RecordedServer(models, api_key="sk-demo") as server:
        settings = SettingsStore(root / "config" / "settings.json")
        application = Application(qapp, store=HistoryStore(root / "history.sqlite3"), settings=settings)
        window, controller = application.window, application.controller
        window.resize(1100, 760)
        application.start(autoload=False)
        window.open_models()
        models_dialog = window._models_dialog
        models_dialog.resize(900, 900)
        settle(qapp, 20)
        section = window.servers_section
        dialog = section.make_dialog()
        dialog.show()
        dialog.url_edit.setText(server.url.replace("127.0.0.1", "localhost"))
        dialog.name_edit.setText("GPU workstation")
        dialog.key_edit.setText("sk-demo")
        dialog.test_button.click()
        wait_until(qapp, dialog.save_button.isEnabled)
        settle(qapp, 20)
        dialog.grab().save(str(out / "add-server-tested.png"))
        dialog.save_button.click()
        wait_until(qapp, lambda: dialog.saved_server is not None)
        section.refresh()
        settle(qapp, 20)
        models_dialog.grab().save(str(out / "models-servers-section.png"))
        saved = dialog.saved_server
        section.card(saved.id).use_buttons["openai/gpt-oss-120b"].click()
        wait_until(qapp, lambda: controller.model is not None)
        controller.send("Why does the 120b model run on the workstation?")
        wait_until(qapp, lambda: controller.turn is None)
        controller.load_remote(saved.target("openai/gpt-oss-20b"))
        wait_until(qapp, lambda: controller.model is not None and controller.model.name == "openai/gpt-oss-20b")
        controller.send("And the small one?")
        wait_until(qapp, lambda: controller.turn is None)
        settle(qapp, 40)
        window.chat.scroll_to_bottom()
        settle(qapp, 20)
        window.grab().save(str(out / "chat-with-remote-model.png"))
        # "Use" goes through the window's one load path: its card (stage, Cancel) while the server is asked,
        server.models_gate = gate = threading.Event()
        section.card(saved.id).use_buttons["openai/gpt-oss-120b"].click()
        wait_until(qapp, lambda: "Connecting to" in window.chat.loading_card.label.text())
        settle(qapp, 20)
        window.grab().save(str(out / "remote-load-stage.png"))
        gate.set()
        server.models_gate = None
        wait_until(qapp, lambda: controller.loading is None and controller.model is not None)
        # and a model the server does not serve is refused while the one in use stays in use.
        controller.load_remote(saved.target("openai/gpt-oss-999b"))
        wait_until(qapp, lambda: controller.loading is None and "still loaded" in window.chat.banner.text())
        settle(qapp, 20)
        window.grab().save(str(out / "remote-load-refused-model-kept.png"))
        application.shutdown()
    if shutil.which("openssl"):
        cert, key = root / "c.pem", root / "c.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=gpu-box"],
                       check=True, capture_output=True)
        with memory_keyring(), RecordedServer(recordings(), tls=(str(cert), str(key))) as tls_server:
            from app.remote.registry import ServerRegistry
            from app.widgets.server_dialog import ServerDialog

            dialog = ServerDialog(ServerRegistry(root / "tls-servers.json"))
            dialog.show()
            dialog.url_edit.setText(tls_server.url)
            dialog.test_button.click()
            wait_until(qapp, dialog.trust_box.isVisible)
            settle(qapp, 20)
            dialog.grab().save(str(out / "add-server-self-signed.png"))
            dialog.trust_box.setChecked(True)
            wait_until(qapp, dialog.save_button.isEnabled)
            settle(qapp, 20)
            dialog.grab().save(str(out / "add-server-self-signed-trusted.png"))
            dialog.close()
    print("\n".join(sorted(str(p) for p in out.glob("*.png"))))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots/remote"))
