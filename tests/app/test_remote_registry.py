"""Servers the user added: the registry file, API keys in the keyring (never in a file), addresses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.remote.client import list_models
from app.remote.errors import AuthFailed, InvalidServerAddress
from app.remote.factory import open_remote_engine
from app.remote.keys import SERVICE, KeyStore
from app.remote.registry import ServerRegistry, normalize_base_url
from app.remote.target import parse_remote_model_path, remote_model_path
from tests.app.recorded_server import RecordedServer
from tests.app.recorded_streams import recordings
from tests.app.remote_support import memory_keyring, no_keyring

KEY = "sk-lantern-test-7f3a9c"


def _files_text(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_a_fresh_registry_is_empty_and_writes_nothing(tmp_path: Path) -> None:
    registry = ServerRegistry(tmp_path / "servers.json", KeyStore())
    assert registry.servers() == [] and not (tmp_path / "servers.json").exists()


def test_the_key_goes_to_the_keyring_and_never_into_a_file(tmp_path: Path) -> None:
    from app.settings import SettingsStore

    with memory_keyring() as backend:
        registry = ServerRegistry(tmp_path / "servers.json", KeyStore())
        server, in_keyring = registry.add("GPU-box:8000", api_key=KEY, name="Team box")
        SettingsStore(tmp_path / "settings.json").update(offline=True)   # the settings file, written too
        assert in_keyring and server.has_key
        assert backend.passwords == {(SERVICE, f"server:{server.id}"): KEY}
        assert KEY not in _files_text(tmp_path)
        saved = json.loads((tmp_path / "servers.json").read_text())
        assert saved["servers"][0]["base_url"] == "http://gpu-box:8000/v1" and saved["servers"][0]["has_key"]
        again = ServerRegistry(tmp_path / "servers.json", KeyStore())     # the next start
        assert again.get(server.id) == server and again.key(server.id) == KEY
        again.remove(server.id)
        assert backend.passwords == {} and again.servers() == []


def test_without_an_os_keyring_the_key_lasts_for_this_run_only(tmp_path: Path) -> None:
    with no_keyring():
        keys = KeyStore()
        assert not keys.available()
        registry = ServerRegistry(tmp_path / "servers.json", keys)
        server, in_keyring = registry.add("https://gpu-box/v1", api_key=KEY)
        assert not in_keyring and registry.key(server.id) == KEY
        assert KEY not in _files_text(tmp_path)
        assert ServerRegistry(tmp_path / "servers.json", KeyStore()).key(server.id) is None   # a new run


@pytest.mark.parametrize("typed,url", [
    ("gpu-box:8000", "http://gpu-box:8000/v1"),
    ("http://gpu-box:8000/", "http://gpu-box:8000/v1"),
    ("https://Llm.Example.org/api/v1/", "https://llm.example.org/api/v1"),
    (" http://127.0.0.1:8080/v1 ", "http://127.0.0.1:8080/v1"),
    ("[::1]:8000", "http://[::1]:8000/v1"),
])
def test_addresses_are_normalized(typed: str, url: str) -> None:
    assert normalize_base_url(typed) == url


@pytest.mark.parametrize("typed", ["", "ftp://box/v1", "http://:8000", "http://box:99999", "http://user:pw@box/v1"])
def test_bad_addresses_are_refused_with_a_reason(typed: str) -> None:
    with pytest.raises(InvalidServerAddress):
        normalize_base_url(typed)


def test_pseudo_paths_round_trip_model_ids_with_slashes_and_colons() -> None:
    for model in ("openai/gpt-oss-120b", "gpt-oss:20b", "gpt-oss-20b"):
        assert parse_remote_model_path(remote_model_path("a1b2c3d4", model)) == ("a1b2c3d4", model)
    assert parse_remote_model_path(Path("/models/gpt-oss-20b")) is None


def test_test_connection_lists_models_with_the_stored_key(tmp_path: Path) -> None:
    with memory_keyring(), RecordedServer(recordings(), api_key=KEY) as server:
        registry = ServerRegistry(tmp_path / "servers.json", KeyStore())
        added, _ = registry.add(server.url, api_key=KEY)
        with pytest.raises(AuthFailed, match="needs an API key"):
            list_models(added.base_url, None)
        models = list_models(added.base_url, registry.key(added.id))
        assert models[0].id == "vllm-reasoning-content" and models[0].max_context == 131072
        registry.update(added.id, models=models)
        # the worker's factory finds the key in the keyring by itself
        engine = open_remote_engine(registry.get(added.id).target("vllm-reasoning-content"))
        assert engine.info.max_context == 131072
        engine.close()
        assert server.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


def test_status_bar_words_say_whether_messages_leave_this_computer() -> None:
    from dataclasses import replace

    from app.remote.labels import status_texts
    from tests.app.fakes import fake_info

    info = replace(fake_info(), name="gpt-oss-120b", backend="remote")
    for host in ("localhost:8000", "127.0.0.1:8177", "[::1]:8000"):
        assert status_texts(replace(info, remote_host=host))[1] == "server on this computer", host
    model, where, tip = status_texts(replace(info, remote_host="gpu-box:8000"))
    assert (model, where) == ("gpt-oss-120b on gpu-box:8000", "remote: messages leave this computer")
    assert "sent to that server" in tip
