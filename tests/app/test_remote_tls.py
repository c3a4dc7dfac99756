"""TLS: verification stays on; a self-signed certificate works only once the user trusts exactly it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from app.remote.client import list_models
from app.remote.engine import RemoteEngine
from app.remote.errors import CertificateNotTrusted
from app.remote.target import RemoteTarget
from app.remote.tls import fetch_certificate, fingerprint
from engine.types import GenerationParams, Message
from tests.app.recorded_server import RecordedServer
from tests.app.recorded_streams import recordings

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")


def self_signed(folder: Path, name: str) -> tuple[str, str]:
    """A self-signed certificate for a name the test server is not reached by (127.0.0.1 is)."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}.example"], check=True, capture_output=True)
    return str(cert), str(key)


def test_self_signed_needs_an_explicit_trust_of_that_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "workstation")
    other_cert, _ = self_signed(tmp_path, "impostor")
    with RecordedServer(recordings(), api_key="sk-tls", tls=(cert, key)) as server:
        with pytest.raises(CertificateNotTrusted, match="self-signed"):
            list_models(server.url, "sk-tls")
        assert server.requests == []                       # the key was never sent over the unverified link
        pem = fetch_certificate(server.url)
        openssl = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", cert],
                                 check=True, capture_output=True, text=True).stdout
        assert fingerprint(pem) == openssl.strip().split("=", 1)[1]
        with pytest.raises(CertificateNotTrusted):          # trusting another certificate does not help
            list_models(server.url, "sk-tls", Path(other_cert).read_text())
        assert [m.id for m in list_models(server.url, "sk-tls", pem)][0] == "vllm-reasoning-content"
        engine = RemoteEngine(RemoteTarget("s1", server.url, "vllm-reasoning", trusted_cert_pem=pem), "sk-tls")
        events = list(engine.chat(engine.new_session(), (Message("user", "hi"),), GenerationParams()))
        assert events[-1].reason == "stop"
        engine.close()
        plain = RemoteEngine(RemoteTarget("s1", server.url, "vllm-reasoning"), "sk-tls")
        events = list(plain.chat(plain.new_session(), (Message("user", "hi"),), GenerationParams()))
        assert events[-1].reason == "error" and "could not be verified" in events[-1].error
        plain.close()
