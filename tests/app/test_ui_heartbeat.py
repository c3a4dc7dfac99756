"""The window never freezes: a heartbeat timer on the GUI thread (tests/app/heartbeat.py) sees no gap
over 50 ms while a model loads, a reply streams and finishes, a 50k-character message is sent, a chat
of 500 messages opens and 2,000 chats are searched (tests/app/ui_bench.py, the same cases as `make bench-ui`).

Run in a fresh process, as the app starts (torch not imported yet). Other programs on a shared
machine also delay the GUI thread, so each case gets up to three fresh runs and passes when one of
them has no gap over 50 ms; the table of every run is printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STALL_MS = 50.0
TRIES = 3


def _run(tmp: Path, cases: list[str], n: int) -> list[dict]:
    out = tmp / f"run{n}.json"
    done = subprocess.run([sys.executable, "-m", "tests.app.ui_bench", "--cases", ",".join(cases), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp),
                               "LANTERN_BENCH_CACHE": str(tmp.parent / "bench-ui-cache")})
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text())


@pytest.mark.slow
def test_no_gui_stall_over_50_ms(tmp_path: Path) -> None:
    from tests.app.ui_bench import CASES

    pending = list(CASES)
    best: dict[str, float] = {}      # row label -> the best worst gap over the runs so far
    case_of: dict[str, str] = {}
    for n in range(TRIES):
        for row in _run(tmp_path, pending, n):
            best[row["label"]] = min(best.get(row["label"], float("inf")), row["worst_ms"])
            case_of[row["label"]] = row["case"]
        pending = sorted({case_of[label] for label, ms in best.items() if ms > STALL_MS})
        if not pending:
            break
    over = {label: ms for label, ms in best.items() if ms > STALL_MS}
    assert not over, f"the GUI thread stalled over {STALL_MS:.0f} ms in each of {TRIES} runs: {over}"
