"""Model, device and backend (with the fallback reason), speed, time to first token, context used,
and a running model download."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget

from engine.types import ModelInfo, Usage


class StatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model_label = QLabel("No model loaded")
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
        for label in (self.model_label, self.device_label):  # long ones clip in a narrow window (tooltips
            label.setMinimumWidth(40)                        # hold the full text) instead of widening it
        self._max_context = 0

    def on_loading(self, name: str) -> None:
        self.model_label.setText(f"Loading {name}…")
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
        text = f"{info.device or '?'} · {info.backend or 'default'}"
        if info.fallback_reason:
            text += f" (fell back: {info.fallback_reason})"
        self.device_label.setText(text)
        self.device_label.setToolTip(text)
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

    def on_usage(self, usage: Usage) -> None:
        if usage.decode_tokens_per_s:
            self.speed_label.setText(f"{usage.decode_tokens_per_s:.1f} tok/s")
        if usage.time_to_first_token_s:
            self.ttft_label.setText(f"first token {usage.time_to_first_token_s:.2f} s")
        used = usage.prompt_tokens + usage.completion_tokens
        if self._max_context:
            pct = 100 * used / self._max_context
            self.context_label.setText(f"context {used:,} / {self._max_context:,} ({pct:.0f}%)")
