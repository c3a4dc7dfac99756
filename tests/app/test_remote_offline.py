"""Offline mode: a remote server that is not on this computer gets no socket at all; loopback works."""

from __future__ import annotations

import pytest

from app.models import network
from app.remote.client import list_models
from app.remote.engine import RemoteEngine
from app.remote.errors import OfflineBlocked, Unreachable
from app.remote.policy import is_loopback_host
from app.remote.target import RemoteTarget
from app.remote.tls import fetch_certificate
from engine.types import GenerationParams, Message
from tests.app.recorded_server import RecordedServer
from tests.app.recorded_streams import recordings
from tests.app.remote_support import is_loopback_address as _loopback
from tests.app.remote_support import sockets  # noqa: F401 - the fixture

FAR = ("http://10.20.30.40:8000/v1", "https://gpu-box.example.org/v1", "http://[2001:db8::1]:8000/v1")


def _far_attempts(attempts: list[object]) -> list[object]:
    return [a for a in attempts if not _loopback(a)]


def test_offline_mode_opens_no_socket_to_a_server_elsewhere(sockets: list[object]) -> None:
    network.set_offline(True)
    for url in FAR:
        target = RemoteTarget("s1", url, "gpt-oss-120b")
        events = list(RemoteEngine(target).chat(object(), (Message("user", "hi"),), GenerationParams()))
        assert len(events) == 1 and events[0].reason == "error" and "Offline mode is on" in events[0].error
        with pytest.raises(OfflineBlocked):
            RemoteEngine.connect(target)
        with pytest.raises(OfflineBlocked):
            list_models(url, "sk-secret")
        with pytest.raises(OfflineBlocked):
            fetch_certificate(url)
    assert sockets == []
    # Control: with offline mode off, the same calls do try to connect (and the guard stops them).
    network.set_offline(False)
    with pytest.raises(Unreachable):
        list_models(FAR[0], None)
    assert _far_attempts(sockets)


def test_offline_mode_keeps_a_server_on_this_computer(sockets: list[object]) -> None:
    network.set_offline(True)
    with RecordedServer(recordings()) as server:
        for url in (server.url, server.url.replace("127.0.0.1", "localhost")):
            assert [m.id for m in list_models(url, None)][:2] == ["vllm-reasoning-content", "vllm-reasoning"]
            engine = RemoteEngine.connect(RemoteTarget("s1", url, "vllm-reasoning"))
            events = list(engine.chat(engine.new_session(), (Message("user", "hi"),), GenerationParams()))
            assert events[-1].reason == "stop"
            engine.close()
    assert sockets and _far_attempts(sockets) == []


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True),
                                       ("localhost", True), ("LOCALHOST.", True), ("10.0.0.1", False),
                                       ("localhost.example.com", False), ("0.0.0.0", False), ("gpu-box", False)])
def test_what_counts_as_this_computer(host: str, loop: bool) -> None:
    assert is_loopback_host(host) is loop
