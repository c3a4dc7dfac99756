"""`make bench`: speed and memory of the CPU engine at the real gpt-oss-20b size.

`python -m engine.bench` writes (once, then reuses) a random checkpoint with the exact tensor names,
shapes and dtypes of gpt-oss-20b in the Hugging Face layout (MXFP4 experts, bf16 elsewhere, sharded
with an index), then measures load time, peak memory, prefill and decode speed, and the machine's
streaming read bandwidth so that decode can be stated as a share of the physical limit.
"""
