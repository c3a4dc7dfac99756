"""The models panel's fit verdicts come from the one fit module, `engine.fit` (kept importable here).

`engine.fit.assess(needed_bytes, system)` is the verdict for a model on this machine;
`engine.fit.check_before_load(...)` the check against the memory that is free now.
"""

from __future__ import annotations

from engine.fit import (  # noqa: F401 - re-exported names
    GPU_HEADROOM_BYTES,
    RAM_HEADROOM_BYTES,
    RAM_HEADROOM_FRACTION,
    FitAssessment,
    GpuInfo,
    SystemMemory,
    Verdict,
    assess,
    assess_folder,
    parse_nvidia_smi,
    probe_gpus,
    probe_system,
)
