"""Lantern's desktop app (PySide6). Never imports torch: the engine runs on a worker thread."""

__version__ = "0.1.0"
