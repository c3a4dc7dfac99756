"""Human-readable sizes, speeds and durations (decimal units, as disks and the hub count)."""

from __future__ import annotations


def format_bytes(n: float) -> str:
    """1234 -> '1.2 kB', 13_761_316_904 -> '13.8 GB'."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_speed(bytes_per_s: float) -> str:
    return f"{format_bytes(bytes_per_s)}/s"


def format_duration(seconds: float | None) -> str:
    """Rounded 'time left' text: '45 s', '12 min', '1 h 5 min'; '' when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{(s + 30) // 60} min"
    h, rem = divmod(s, 3600)
    return f"{h} h {rem // 60} min"
