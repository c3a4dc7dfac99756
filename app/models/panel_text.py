"""Progress wording shared by the panel, the status bar and the command line (Qt-free)."""

from __future__ import annotations

from app.models.downloader import ProgressSnapshot
from app.models.units import format_bytes, format_duration, format_speed


def progress_text(done: int, total: int, speed: float, eta: float | None) -> str:
    """'1.2 GB of 13.8 GB · 25.0 MB/s · 8 min left' (speed and time left only when known)."""
    parts = [f"{format_bytes(done)} of {format_bytes(total)}"]
    if speed > 0:
        parts.append(format_speed(speed))
    left = format_duration(eta)
    if left:
        parts.append(f"{left} left")
    return " · ".join(parts)


def progress_line(p: ProgressSnapshot) -> str:
    return progress_text(p.done_bytes, p.total_bytes, p.speed_bps, p.eta_s)
