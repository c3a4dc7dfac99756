"""Model (its whole name, elided in the middle when narrow), a short device label, live speed and
context meter while a reply streams (and the chat's context use when it is reopened), time to first
token, a loading model's stage and a running download."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel, QProgressBar, QSizePolicy, QStatusBar, QWidget

from app.messages import LiveStats
from engine.types import ModelInfo, Usage


def device_label(info: ModelInfo) -> str:
    """"CPU · AVX2", "CUDA · Triton", "Apple GPU · Metal": the engine's own label (engine.types.backend_label)."""
    return info.backend_label


class ElidedLabel(QLabel):
    """A label that shows its whole text when there is room and "gpt-oss…20b" (middle elided) when not;
    the full text is always in the tooltip."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(60)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(60, super().minimumSizeHint().height())

    def shown_text(self) -> str:
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideMiddle, self.contentsRect().width())

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(self.contentsRect(), int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft),
                         self.shown_text())


class StatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model_label = ElidedLabel("No model loaded")
        self.device_label = QLabel("")
        self.speed_label = QLabel("")
        self.ttft_label = QLabel("")
        self.context_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.progress.setAccessibleName("Model loading progress")
        names = ("Model", "Device and backend", "Tokens per second", "Time to first token", "Context used")
        for label, name in zip((self.model_label, self.device_label, self.speed_label, self.ttft_label,
                                self.context_label), names):
            label.setAccessibleName(name)
            label.setContentsMargins(6, 0, 6, 0)
            self.addPermanentWidget(label)
        self.addPermanentWidget(self.progress)
        self.download_label = QLabel("")
        self.download_label.setAccessibleName("Model download")
        self.download_label.setContentsMargins(6, 0, 6, 0)
        self.download_bar = QProgressBar()
        self.download_bar.setMaximumWidth(120)
        self.download_bar.setRange(0, 1000)
        self.download_bar.setTextVisible(False)
        self.download_bar.setAccessibleName("Model download progress")
        self.insertPermanentWidget(0, self.download_bar)
        self.insertPermanentWidget(0, self.download_label)
        self.download_label.setVisible(False)
        self.download_bar.setVisible(False)
        self.device_label.setMinimumWidth(40)   # clips in a narrow window (the tooltip holds the full text)
        self._max_context = 0

    def on_loading(self, name: str) -> None:
        self.model_label.setStyleSheet("")     # not the pill of a remote model being replaced
        self.model_label.setText(f"Loading {name}…")
        self.model_label.setToolTip(f"Loading {name}")
        self.device_label.setText("")
        self.progress.setValue(0)
        self.progress.setVisible(True)

    def on_load_progress(self, fraction: float, stage: str) -> None:
        self.progress.setValue(int(round(100 * max(0.0, min(1.0, fraction)))))
        self.progress.setFormat(f"{stage} %p%" if stage else "%p%")

    def on_model(self, info: ModelInfo | None) -> None:
        """Show where the model runs, and why, if it fell back."""
        self.progress.setVisible(False)
        self.model_label.setStyleSheet("")
        if info is None:
            self.model_label.setText("No model loaded")
            for label in (self.device_label, self.speed_label, self.ttft_label, self.context_label):
                label.setText("")
            self._max_context = 0
            return
        self._max_context = info.max_context
        self.model_label.setText(info.name)
        if info.remote_host:     # a model on a server: say so, and that messages leave this computer
            from app.remote.labels import status_texts

            model_text, where_text, tip = status_texts(info)
            self.model_label.setText(model_text)
            self.model_label.setStyleSheet("background:#1f4e99;color:white;border-radius:7px;font-weight:600;")
            self.model_label.setToolTip(tip)
            self.device_label.setText(where_text)
            self.device_label.setToolTip(tip)
            self.context_label.setText(f"context 0 / {info.max_context:,}" if info.max_context else "")
            return
        self.device_label.setText(device_label(info))
        tip = f"Runs on {info.device or '?'} with the {info.backend or 'default'} kernels"
        if info.fallback_reason:
            tip += f"; {info.fallback_reason}"
        self.device_label.setToolTip(tip)
        self.model_label.setToolTip(f"{info.name}\n{info.path}")
        self.context_label.setText(f"context 0 / {info.max_context:,}")

    def on_download_progress(self, name: str, done: int, total: int, speed_bps: float = 0.0,
                             eta_s: float | None = None) -> None:
        """A model download is running: '⬇ gpt-oss-20b 42%' with a bar; details in the tooltip."""
        from app.models.panel_text import progress_text

        fraction = done / total if total else 0.0
        self.download_label.setText(f"⬇ {name} {int(100 * fraction)}%")
        details = f"Downloading {name}: {progress_text(done, total, speed_bps, eta_s)}"
        self.download_label.setToolTip(details)
        self.download_bar.setToolTip(details)
        self.download_bar.setValue(int(1000 * fraction))
        self.download_label.setVisible(True)
        self.download_bar.setVisible(True)

    def on_download_state(self, name: str | None, detail: str = "") -> None:
        """None: no download runs (hide it). Else one is starting or retrying: 'detail' in the tooltip,
        and the percentage, once known, stays in the label."""
        if name is None:
            self.download_label.setVisible(False)
            self.download_bar.setVisible(False)
            return
        tip = f"{name}: {detail}" if detail else name
        if not self.download_bar.isVisible():
            self.download_label.setText(f"⬇ {name}…")
        self.download_label.setToolTip(tip)
        self.download_label.setVisible(True)

    def on_context(self, used: int, max_context: int = 0) -> None:
        """The context meter: `used` tokens of `max_context` (0: the loaded model's)."""
        limit = max_context or self._max_context
        if not limit:
            self.context_label.setText("")
            return
        if not used:
            self.context_label.setText(f"context 0 / {limit:,}")
            return
        self.context_label.setText(f"context {used:,} / {limit:,} ({100 * used / limit:.0f}%)")

    def on_live(self, stats: LiveStats, max_context: int = 0) -> None:
        """While a reply streams: tokens/s so far and the context it fills."""
        if stats.phase == "decode" and stats.completion_tokens > 1:
            self.speed_label.setText(f"{stats.tokens_per_s:.1f} tok/s")
        elif stats.phase == "prefill" and stats.prefill_elapsed_s > 0:
            self.speed_label.setText(f"reading {stats.prefill_done / stats.prefill_elapsed_s:.0f} tok/s")
        if stats.prompt_tokens:    # a server says how long the prompt was only at the end (on_usage)
            self.on_context(stats.context_tokens, max_context)

    def on_usage(self, usage: Usage) -> None:
        if usage.decode_tokens_per_s:
            self.speed_label.setText(f"{usage.decode_tokens_per_s:.1f} tok/s")
        if usage.time_to_first_token_s:
            self.ttft_label.setText(f"first token {usage.time_to_first_token_s:.2f} s")
        used = usage.prompt_tokens + usage.completion_tokens
        if self._max_context:
            pct = 100 * used / self._max_context
            self.context_label.setText(f"context {used:,} / {self._max_context:,} ({pct:.0f}%)")
