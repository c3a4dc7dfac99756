"""The window's Local API server: off by default, serves the window's model through its worker thread."""

from __future__ import annotations

import socket

import openai
import pytest

from tests.app.fakes import DEFAULT_ANALYSIS, DEFAULT_FINAL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_switch_serves_the_loaded_model(env) -> None:
    app = env.application
    server = app.api_server
    assert not app.settings.settings.api_server and server.address == ""   # off by default
    env.load()
    app.settings.update(api_server=True, api_server_port=_free_port())
    key = app.settings.settings.api_key
    assert key.startswith("lantern-")                       # generated, kept in Settings
    assert server.address.startswith("http://127.0.0.1:") and server.label.text().endswith(server.address)
    assert not server.label.isHidden()
    client = openai.OpenAI(base_url=server.address, api_key=key, max_retries=0, timeout=30)
    assert [m.id for m in client.models.list().data] == ["fake-oss"]
    r = client.chat.completions.create(model="fake-oss", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content.startswith("".join(DEFAULT_FINAL))
    assert r.choices[0].message.reasoning == "".join(DEFAULT_ANALYSIS)
    assert env.engine.calls[-1][-1].content == "hi"          # the window's engine, on its worker, answered
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.address, api_key="wrong", max_retries=0).models.list()
    address = server.address
    app.settings.update(api_server=False)
    assert server.address == "" and server.label.isHidden()
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=address, api_key=key, max_retries=0, timeout=5).models.list()


def test_without_a_model_the_api_says_so(env) -> None:
    app = env.application
    app.settings.update(api_server=True, api_server_port=_free_port())
    client = openai.OpenAI(base_url=app.api_server.address, api_key=app.settings.settings.api_key, max_retries=0)
    assert client.models.list().data == []
    with pytest.raises(openai.InternalServerError) as info:   # 503
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 503 and info.value.body["code"] == "model_not_loaded"
    app.settings.update(api_server=False)


def test_a_model_on_a_server_is_not_served_by_the_local_api() -> None:
    """The window's remote model (app/remote) is not relayed: the local API says no model is loaded."""
    from pathlib import Path

    from app.api_server import WorkerHost
    from engine.types import ModelInfo

    remote = ModelInfo(name="gpt-oss-120b", path=Path("remote:ab12:gpt-oss-120b"), layout="original", num_layers=0,
                       num_experts=0, experts_per_token=0, params_total=0, params_active=0, bytes_on_disk=0,
                       memory_needed_bytes=0, max_context=131072, device="remote", backend="http://gpu-box:8000/v1",
                       remote_host="gpu-box:8000")
    host = WorkerHost(worker=None)
    host.set_model(remote)
    assert host.current() is None
