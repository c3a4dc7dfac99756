"""engine/fit.py, the one place that answers "will it fit": the free-memory rule and a folder's verdict."""

from __future__ import annotations

from pathlib import Path

from engine.fit import GIB, SystemMemory, Verdict, assess_folder, check_before_load, enough_free


def test_the_memory_a_replaced_model_gives_back_counts_as_free() -> None:
    assert enough_free(10, 10) and not enough_free(11, 10)
    assert enough_free(11, 10, freed_bytes=1) and not enough_free(11, 10, freed_bytes=-5)


def test_a_folder_gets_a_verdict_and_a_check_against_free_ram(tiny_model_dir: Path) -> None:
    verdict = assess_folder(tiny_model_dir, 4096, SystemMemory(64 * GIB, None))
    assert verdict is not None and verdict.verdict == Verdict.CPU_ONLY and verdict.needed_bytes > 0
    assert assess_folder(tiny_model_dir / "missing", 4096, SystemMemory(64 * GIB, None)) is None
    assert check_before_load(tiny_model_dir, 4096, "cpu", gpu_present=False, ram=lambda: (64 * GIB, 64 * GIB)) is None
    short = check_before_load(tiny_model_dir, 4096, "cpu", gpu_present=False, ram=lambda: (1000, 2000))
    assert short is not None and short.needed_bytes == verdict.needed_bytes and "of RAM is free" in short.details()
    assert check_before_load(tiny_model_dir, 4096, "auto", gpu_present=True, ram=lambda: (1000, 2000)) is None
