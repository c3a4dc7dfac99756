"""The two independent oracles the engine is checked against, made runnable on CPU.

* OpenAI's reference `gpt_oss.torch.model.Transformer` on the `original/` folder (bf16, no KV cache).
  Its `from_checkpoint` works on CPU with torch.distributed not initialised (world size 1).
* transformers' `GptOssForCausalLM` on the HF layout, MXFP4 dequantized to bf16
  (`Mxfp4Config(dequantize=True)`: the triton MXFP4 kernels do not exist on CPU), eager attention (the only
  implementation with sinks).
"""

from __future__ import annotations

import contextlib
import io
import logging
from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=4)
def reference_model(root: Path, dtype: torch.dtype = torch.bfloat16):
    from gpt_oss.torch.model import Transformer as RefTransformer

    model = RefTransformer.from_checkpoint(str(root / "original"), device="cpu")
    if dtype != torch.bfloat16:
        model = model.to(dtype)
    return model.eval()


@torch.inference_mode()
def reference_logits(root: Path, tokens: list[int], dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """[T, V] fp32 logits of the reference model (bf16 by default; fp32 = the same math without rounding)."""
    model = reference_model(root, dtype)
    return model(torch.tensor(tokens, dtype=torch.long)).float()


@lru_cache(maxsize=4)
def hf_model(root: Path):
    from transformers import GptOssForCausalLM, Mxfp4Config

    logging.getLogger("transformers").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        model = GptOssForCausalLM.from_pretrained(
            str(root), quantization_config=Mxfp4Config(dequantize=True), dtype=torch.bfloat16,
            attn_implementation="eager",
        )
    return model.eval()


@torch.inference_mode()
def hf_logits(root: Path, tokens: list[int]) -> torch.Tensor:
    model = hf_model(root)
    out = model(input_ids=torch.tensor([tokens], dtype=torch.long), use_cache=False)
    return out.logits[0].float()
