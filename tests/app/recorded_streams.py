"""Chat Completions streams in the shapes real servers send for gpt-oss (tests only).

The chunk layouts follow what vLLM (0.10, and 0.11+ after it renamed `reasoning_content` to
`reasoning`) and llama.cpp's llama-server put on the wire: key order, the empty first `role`
chunk, vLLM's `logprobs`/`token_ids` nulls, llama-server's `system_fingerprint` and `timings`,
the usage chunk with `choices: []`, and the closing `data: [DONE]`. Each stream carries the same
reply a local run streams in tests/app/fakes.py (DEFAULT_ANALYSIS then DEFAULT_FINAL pieces), so
a test can compare the two event by event.
"""

from __future__ import annotations

import json
from typing import Any

from tests.app.fakes import DEFAULT_ANALYSIS, DEFAULT_FINAL
from tests.app.recorded_server import Recording

CREATED = 1758892077
FINAL = DEFAULT_FINAL[:-1] + [DEFAULT_FINAL[-1] + " (reply 1)"]   # FakeEngine's first reply, piece for piece


def _sse(obj: Any) -> str:
    return "data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n\n"


DONE = "data: [DONE]\n\n"


def vllm_chunk(delta: dict[str, Any] | None, finish: str | None = None, *, usage: dict[str, Any] | None = None,
               model: str = "openai/gpt-oss-120b") -> str:
    head = {"id": "chatcmpl-beb39e7777184d59a9463d42e86d9ba2", "object": "chat.completion.chunk",
            "created": CREATED, "model": model}
    if delta is None:   # the usage chunk
        return _sse({**head, "choices": [], "usage": usage})
    return _sse({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish,
                                      "token_ids": None}]})


def llama_chunk(delta: dict[str, Any], finish: str | None = None, *, usage: dict[str, Any] | None = None,
                n: int = 0) -> str:
    obj: dict[str, Any] = {"choices": [{"finish_reason": finish, "index": 0, "delta": delta}], "created": CREATED,
                           "id": "chatcmpl-qC6laQHbZ2CmxNvJ4NoB1L93LcVF7nfe", "model": "gpt-oss-20b-mxfp4.gguf",
                           "system_fingerprint": "b6115-3db4da56", "object": "chat.completion.chunk"}
    if usage is not None:
        obj["usage"] = usage
    obj["timings"] = {"prompt_n": 78, "prompt_ms": 61.2, "prompt_per_token_ms": 0.78, "prompt_per_second": 1274.5,
                      "predicted_n": n, "predicted_ms": 14.6 * n, "predicted_per_token_ms": 14.6,
                      "predicted_per_second": 68.5}
    return _sse(obj)


VLLM_USAGE = {"prompt_tokens": 78, "total_tokens": 87, "completion_tokens": 9,
              "prompt_tokens_details": {"cached_tokens": 64}}


def vllm_stream(reasoning_field: str | None, *, final: list[str] = FINAL, tool: bool = False,
                model: str = "openai/gpt-oss-120b") -> tuple[str, ...]:
    pieces = [vllm_chunk({"role": "assistant", "content": ""}, model=model)]
    if reasoning_field is not None:
        pieces += [vllm_chunk({reasoning_field: t}, model=model) for t in DEFAULT_ANALYSIS]
    pieces += [vllm_chunk({"content": t}, model=model) for t in final]
    if tool:
        pieces += [
            vllm_chunk({"tool_calls": [{"id": "chatcmpl-tool-7c5a1b", "type": "function", "index": 0,
                                        "function": {"name": "get_weather", "arguments": ""}}]}, model=model),
            vllm_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}, model=model),
            vllm_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Oslo"}'}}]}, model=model),
        ]
    pieces.append(vllm_chunk({}, "tool_calls" if tool else "stop", model=model))
    pieces.append(vllm_chunk(None, usage=VLLM_USAGE, model=model))
    pieces.append(DONE)
    return tuple(pieces)


def llama_stream(*, reasoning: bool = True, tool: bool = False) -> tuple[str, ...]:
    pieces = [llama_chunk({"role": "assistant", "content": None})]
    n = 0
    if reasoning:
        for t in DEFAULT_ANALYSIS:
            n += 1
            pieces.append(llama_chunk({"reasoning_content": t}, n=n))
    for t in FINAL:
        n += 1
        pieces.append(llama_chunk({"content": t}, n=n))
    if tool:
        pieces += [llama_chunk({"tool_calls": [{"index": 0, "id": "NcYp2m5Kx9uQ", "type": "function",
                                                "function": {"name": "get_weather", "arguments": "{\"city\":"}}]}),
                   llama_chunk({"tool_calls": [{"index": 0, "function": {"arguments": " \"Oslo\"}"}}]})]
    pieces.append(llama_chunk({}, "tool_calls" if tool else "stop",
                              usage={"completion_tokens": n, "prompt_tokens": 78, "total_tokens": 78 + n}, n=n))
    pieces.append(DONE)
    return tuple(pieces)


def dropped_stream() -> tuple[str, ...]:
    """vLLM-shaped, cut off in the middle of the answer (the server process died)."""
    return vllm_stream("reasoning")[:1 + len(DEFAULT_ANALYSIS) + 2]


def slow_stream(n: int = 400) -> tuple[str, ...]:
    return tuple([vllm_chunk({"role": "assistant", "content": ""})]
                 + [vllm_chunk({"reasoning": f"step {i}. "}) for i in range(n)] + [vllm_chunk({}, "stop"), DONE])


VLLM_CONTEXT_ERROR = json.dumps({"object": "error", "message": (
    "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens (5000 in the messages, "
    "4000 in the completion). Please reduce the length of the messages or completion."),
    "type": "BadRequestError", "param": None, "code": 400})
LLAMA_CONTEXT_ERROR = json.dumps({"error": {"code": 400, "message": (
    "the request exceeds the available context size, try increasing it"), "type": "exceed_context_size_error",
    "n_prompt_tokens": 9000, "n_ctx": 8192}})
MID_STREAM_ERROR = (vllm_chunk({"role": "assistant", "content": ""}), vllm_chunk({"reasoning": "The user"}),
                    _sse({"error": {"object": "error", "message": "CUDA out of memory while decoding",
                                    "type": "InternalServerError", "param": None, "code": 500}}), DONE)


def recordings() -> dict[str, Recording]:
    """Every recorded reply, by the model name that replays it."""
    return {
        "vllm-reasoning-content": Recording(vllm_stream("reasoning_content"), max_model_len=131072),
        "vllm-reasoning": Recording(vllm_stream("reasoning")),
        "vllm-no-reasoning": Recording(vllm_stream(None)),
        "vllm-tool-call": Recording(vllm_stream("reasoning", final=[], tool=True)),
        "llama-reasoning-content": Recording(llama_stream()),
        "llama-no-reasoning": Recording(llama_stream(reasoning=False)),
        "llama-tool-call": Recording(llama_stream(tool=True)),
        "vllm-dropped": Recording(dropped_stream(), drop=True),
        "vllm-slow": Recording(slow_stream(), delay_s=0.02),
        "vllm-context-error": Recording((VLLM_CONTEXT_ERROR,), status=400, content_type="application/json"),
        "llama-context-error": Recording((LLAMA_CONTEXT_ERROR,), status=400, content_type="application/json"),
        "vllm-error-mid-stream": Recording(MID_STREAM_ERROR),
        "not-streaming": Recording((json.dumps({
            "id": "chatcmpl-1", "object": "chat.completion", "created": CREATED, "model": "gpt-oss-20b",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there.",
                                                  "reasoning": "Say hi."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 70, "completion_tokens": 6, "total_tokens": 76}}),),
            content_type="application/json"),
    }
