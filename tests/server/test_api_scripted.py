"""The API with a scripted engine: exact tool_calls, events, errors, auth, disconnects (official openai client)."""

from __future__ import annotations

import json
import threading
import time

import http.client
from urllib.parse import urlsplit

import openai
import pytest

from engine.harmony_tools import function_names
from tests.server.conftest import API_KEY, raw_request, serve
from tests.server.fakes import FakeEngine

THINK_THEN_ANSWER = ("<|channel|>analysis<|message|>The user greets.<|end|><|start|>assistant<|channel|>final"
                     "<|message|>Hello there!<|return|>")
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get-weather", "description": "Current weather.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = ("<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary "
        'to=functions.get_weather <|constrain|>json<|message|>{"city": "Tokyo"}<|call|>')


def test_chat_reasoning_never_in_content(fake_server) -> None:
    fake_server.engine.scripts += [THINK_THEN_ANSWER]
    r = fake_server.client().chat.completions.create(model="gpt-oss-20b", messages=[{"role": "user", "content": "hi"}],
                                                     reasoning_effort="high")
    msg = r.choices[0].message
    assert msg.content == "Hello there!"
    assert msg.reasoning == msg.reasoning_content == "The user greets."
    assert r.choices[0].finish_reason == "stop"
    messages, params = fake_server.engine.calls[-1]
    assert params.reasoning_effort == "high"
    prompt = fake_server.engine.tokenizer.decode(fake_server.engine.prompts[-1])
    assert "\n\nReasoning: high\n\n" in prompt    # the effort is applied in the system message


def test_chat_tool_call_round_trip(fake_server) -> None:
    eng = fake_server.engine
    eng.scripts += [CALL, "<|channel|>final<|message|>Sunny in Tokyo.<|return|>"]
    client = fake_server.client()
    r = client.chat.completions.create(model="gpt-oss-20b", messages=[{"role": "user", "content": "Weather?"}],
                                       tools=[WEATHER_TOOL])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None and choice.message.reasoning == "Need the weather."
    (call,) = choice.message.tool_calls
    assert call.function.name == "get-weather"            # the sanitised name mapped back
    assert json.loads(call.function.arguments) == {"city": "Tokyo"}
    assert call.id.startswith("call_")
    prompt = eng.tokenizer.decode(eng.prompts[-1])
    assert "type get_weather = (_: {\ncity: string,\n}) => any;" in prompt
    assert "Calls to these tools must go to the commentary channel: 'functions'." in prompt
    # the result goes back as a harmony tool message, the call re-rendered as harmony renders it
    r2 = client.chat.completions.create(model="gpt-oss-20b", tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "reasoning": "Need the weather.", "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.function.name,
                                                             "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'}])
    assert r2.choices[0].message.content == "Sunny in Tokyo."
    prompt = eng.tokenizer.decode(eng.prompts[-1])
    assert prompt.endswith(
        "<|start|>assistant<|channel|>analysis<|message|>Need the weather.<|end|>"
        "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>"
        '{"city": "Tokyo"}<|call|><|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>'
        '{"sky": "sunny"}<|end|><|start|>assistant')


def test_chat_stream_tool_call_chunks(fake_server) -> None:
    fake_server.engine.scripts += [CALL]
    chunks = list(fake_server.client().chat.completions.create(
        model="gpt-oss-20b", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    ids = {c.id for c in chunks}
    assert len(ids) == 1
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning", None) or "" for c in chunks if c.choices)
    assert reasoning == "Need the weather."
    frags = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert frags[0].id.startswith("call_") and frags[0].function.name == "get-weather" and frags[0].index == 0
    assert all(f.id is None and f.index == 0 for f in frags[1:])
    assert json.loads("".join(f.function.arguments or "" for f in frags)) == {"city": "Tokyo"}
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_undeclared_recipient_is_text_not_a_call(fake_server) -> None:
    fake_server.engine.scripts += ["<|channel|>commentary to=functions.launch_missiles <|constrain|>json<|message|>"
                                   "{}<|call|>"]
    r = fake_server.client().chat.completions.create(model="gpt-oss-20b", tools=[WEATHER_TOOL],
                                                     messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content == "{}"
    assert r.choices[0].finish_reason == "stop"


def test_stop_sequence_cuts_and_cancels() -> None:
    eng = FakeEngine(delay_s=0.02, scripts=["<|channel|>final<|message|>one two three " + "four " * 50 + "<|return|>"])
    with serve(eng, None) as s:
        r = s.client().chat.completions.create(model="gpt-oss-20b", messages=[{"role": "user", "content": "x"}],
                                               stop=[" thr", "zzz"])
    assert r.choices[0].message.content == "one two"
    assert r.choices[0].finish_reason == "stop"
    assert eng.stopped_early[-1] and eng.produced[-1] < 20


def test_sampling_fields_reach_the_engine(fake_server) -> None:
    fake_server.client().chat.completions.create(
        model="openai/gpt-oss-20b", messages=[{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "x"},
                                              {"role": "developer", "content": "Use French."}],
        temperature=0.3, top_p=0.9, seed=7, max_completion_tokens=100)
    messages, params = fake_server.engine.calls[-1]
    assert (params.temperature, params.top_p, params.seed, params.max_tokens) == (0.3, 0.9, 7, 100)
    prompt = fake_server.engine.tokenizer.decode(fake_server.engine.prompts[-1])
    assert "# Instructions\n\nBe brief.\n\nUse French.<|end|>" in prompt   # every system/developer message kept


def test_response_format_goes_to_the_developer_message(fake_server) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fake_server.client().chat.completions.create(
        model="gpt-oss-20b", messages=[{"role": "user", "content": "x"}],
        response_format={"type": "json_schema", "json_schema": {"name": "count", "schema": schema}})
    _, params = fake_server.engine.calls[-1]
    assert params.response_format.schema == schema
    prompt = fake_server.engine.tokenizer.decode(fake_server.engine.prompts[-1])
    assert '# Response Formats\n\n## count\n\n{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}' \
        in prompt


# --- Responses ---------------------------------------------------------------------------------------

def test_responses_stream_events(fake_server) -> None:
    fake_server.engine.scripts += [CALL]
    tool = {"type": "function", "name": "get-weather", "description": "Current weather.",
            "parameters": WEATHER_TOOL["function"]["parameters"]}
    events = list(fake_server.client().responses.create(model="gpt-oss-20b", input="Weather?", tools=[tool],
                                                        stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "response.reasoning_text.delta" in types and "response.function_call_arguments.delta" in types
    added = [e.item.type for e in events if e.type == "response.output_item.added"]
    assert added == ["reasoning", "function_call"]
    done = events[-1].response
    reasoning, call = done.output
    assert reasoning.content[0].text == "Need the weather."
    assert call.name == "get-weather" and json.loads(call.arguments) == {"city": "Tokyo"}
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert args == call.arguments
    # the follow-up with the function's output continues from the stored response
    fake_server.engine.scripts += ["<|channel|>final<|message|>Sunny.<|return|>"]
    r2 = fake_server.client().responses.create(model="gpt-oss-20b", previous_response_id=done.id, tools=[tool],
                                               input=[{"type": "function_call_output", "call_id": call.call_id,
                                                       "output": "sunny"}])
    assert r2.output_text == "Sunny."
    prompt = fake_server.engine.tokenizer.decode(fake_server.engine.prompts[-1])
    assert ("<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>sunny<|end|><|start|>assistant"
            ) in prompt
    assert "<|channel|>analysis<|message|>Need the weather.<|end|>" in prompt   # turn in progress keeps reasoning


def test_responses_text_events_and_store(fake_server) -> None:
    fake_server.engine.scripts += [THINK_THEN_ANSWER]
    client = fake_server.client()
    events = list(client.responses.create(model="gpt-oss-20b", input="hi", instructions="Be kind.",
                                          reasoning={"effort": "low"}, stream=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    reasoning = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert (text, reasoning) == ("Hello there!", "The user greets.")
    final = events[-1].response
    assert final.output_text == "Hello there!"
    assert client.responses.retrieve(final.id).id == final.id
    _, params = fake_server.engine.calls[-1]
    assert params.reasoning_effort == "low"
    client.responses.delete(final.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(final.id)


def test_store_false_is_not_chained(fake_server) -> None:
    client = fake_server.client()
    r = client.responses.create(model="gpt-oss-20b", input="hi", store=False)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="gpt-oss-20b", input="again", previous_response_id=r.id)
    assert info.value.body["code"] == "previous_response_not_found"


# --- errors ------------------------------------------------------------------------------------------

def _post(served, path: str, body, key: str | None = API_KEY, raw: bytes | None = None):
    return raw_request(served, "POST", path, raw if raw is not None else json.dumps(body).encode(), key)


@pytest.mark.parametrize("body, status, code, param", [
    ({"model": "gpt-oss-20b", "messages": []}, 400, "invalid_type", "messages"),
    ({"messages": [{"role": "user", "content": "x"}]}, 400, "missing_required_parameter", "model"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, 404, "model_not_found", "model"),
    ({"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "x"}], "temperature": 3}, 400, "invalid_value",
     "temperature"),
    ({"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**9}, 400,
     "invalid_value", "max_tokens"),
    ({"model": "gpt-oss-20b", "messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_value",
     "messages[0].role"),
    ({"model": "gpt-oss-20b", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}, 400,
     "invalid_value", "messages[0].tool_call_id"),
    ({"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "x"}],
      "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objectx"}}}}, 400,
     "invalid_value", "response_format"),
])
def test_errors_have_openai_shape(fake_server, body, status, code, param) -> None:
    r = _post(fake_server, "/chat/completions", body)
    assert r.status == status
    err = r.json()["error"]
    assert (err["code"], err["param"]) == (code, param) and err["message"] and err["type"]


def test_malformed_body_and_token(fake_server) -> None:
    r = _post(fake_server, "/chat/completions", None, raw=b"{not json")
    assert r.status == 400 and r.json()["error"]["code"] == "invalid_json"
    assert _post(fake_server, "/chat/completions", {}, key=None).status == 401
    r = _post(fake_server, "/chat/completions", {}, key="wrong")
    assert r.status == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert raw_request(fake_server, "GET", "/models", key=None).status == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=fake_server.url, api_key="bad", max_retries=0).models.list()
    r = raw_request(fake_server, "GET", "/nowhere")
    assert r.status == 404 and "error" in r.json()
    r = raw_request(fake_server, "OPTIONS", "/chat/completions", key=None, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


def test_body_is_bounded(tmp_path) -> None:
    with serve(FakeEngine(), None, max_body_bytes=1000) as s:
        r = _post(s, "/chat/completions", {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "x" * 5000}]})
        assert r.status == 413 and r.json()["error"]["code"] == "request_too_large"


def test_context_length_exceeded_with_numbers() -> None:
    with serve(FakeEngine(max_context=200), None) as s:
        with pytest.raises(openai.BadRequestError) as info:
            s.client().chat.completions.create(model="gpt-oss-20b", messages=[{"role": "user", "content": "word " * 300}])
        err = info.value.body
        assert err["code"] == "context_length_exceeded"
        assert "maximum context length is 200 tokens" in err["message"] and "resulted in 4" in err["message"]
        assert not s.engine.calls


def test_queue_full_is_429() -> None:
    gate = threading.Event()
    with serve(FakeEngine(gate=gate), None, max_queue=1) as s:
        body = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "x"}]}
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(_post(s, "/chat/completions", body).status))
                   for _ in range(2)]
        for t in threads:   # one runs (held by the gate), one waits in the queue
            t.start()
            time.sleep(0.3)
        r = _post(s, "/chat/completions", body)
        assert r.status == 429 and r.json()["error"]["type"] == "rate_limit_error"
        gate.set()
        for t in threads:
            t.join(10)
        assert results == [200, 200]


def test_models_list(fake_server) -> None:
    models = fake_server.client().models.list()
    assert [m.id for m in models.data] == ["openai/gpt-oss-20b"]
    assert fake_server.client().models.retrieve("gpt-oss-20b").id == "openai/gpt-oss-20b"


def test_disconnect_cancels_within_a_token() -> None:
    eng = FakeEngine(delay_s=0.02, scripts=["<|channel|>final<|message|>" + "word " * 400 + "<|return|>"])
    with serve(eng, None) as s:
        body = {"model": "gpt-oss-20b", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        url = urlsplit(s.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.request("POST", url.path + "/chat/completions", body=json.dumps(body),
                     headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
        r = conn.getresponse()
        got = [r.fp.readline() for _ in range(12)]
        assert any(b"word" in line for line in got)
        conn.sock.shutdown(2)
        conn.close()
        # the connection is closed: the generation stops at the next token boundary
        deadline = time.monotonic() + 5
        while not eng.stopped_early[-1] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert eng.stopped_early[-1]
        produced = eng.produced[-1]
        time.sleep(0.2)
        assert eng.produced[-1] == produced < 100   # nothing more after the stop (400 tokens were scripted)


def test_sanitised_names_are_unique_and_reversible() -> None:
    from engine.types import FunctionTool

    names = function_names([FunctionTool("get-weather"), FunctionTool("get_weather")])
    assert names == {"get-weather": "get_weather_2", "get_weather": "get_weather"}


def test_tool_choice_reaches_the_engine(fake_server) -> None:
    fake_server.engine.scripts += [CALL, CALL]
    client = fake_server.client()
    client.chat.completions.create(model="gpt-oss-20b", messages=[{"role": "user", "content": "x"}],
                                   tools=[WEATHER_TOOL], tool_choice={"type": "function",
                                                                      "function": {"name": "get-weather"}})
    _, params = fake_server.engine.calls[-1]
    assert (params.tool_choice, params.allowed_tools) == ("required", ("get-weather",))
    client.chat.completions.create(model="gpt-oss-20b", messages=[{"role": "user", "content": "x"}],
                                   tools=[WEATHER_TOOL], tool_choice="none")
    prompt = fake_server.engine.tokenizer.decode(fake_server.engine.prompts[-1])
    assert "namespace functions" not in prompt and "Calls to these tools" not in prompt
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-oss-20b", messages=[{"role": "user", "content": "x"}],
                                       tools=[WEATHER_TOOL], tool_choice={"type": "function",
                                                                          "function": {"name": "nope"}})
