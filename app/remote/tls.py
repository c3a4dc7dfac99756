"""TLS for servers: verification is always on. A server with a self-signed certificate is used only
after the user trusted that exact certificate (shown by its SHA-256 fingerprint) for that server;
it then becomes the only certificate that server may present (verification stays on, against it).
"""

from __future__ import annotations

import hashlib
import ssl
from urllib.parse import urlsplit

from app.remote.errors import Unreachable
from app.remote.policy import ensure_allowed

CONNECT_TIMEOUT_S = 10.0


def fingerprint(pem: str) -> str:
    """SHA-256 of the certificate, as colon-separated hex pairs (what browsers and openssl show)."""
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def fetch_certificate(base_url: str, timeout: float = CONNECT_TIMEOUT_S) -> str:
    """The certificate an https server presents (PEM), read without trusting it, for the user to judge."""
    ensure_allowed(base_url)
    parts = urlsplit(base_url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        return ssl.get_server_certificate((host, port), timeout=timeout)
    except (OSError, ssl.SSLError) as exc:
        raise Unreachable(f"Could not read the certificate of {host}:{port}: {exc}") from exc


def ssl_context(trusted_cert_pem: str | None) -> ssl.SSLContext | bool:
    """What httpx2 gets as `verify`: True (the system's trusted authorities), or a context that
    trusts exactly the certificate the user accepted for this server."""
    if not trusted_cert_pem:
        return True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    # The pinned certificate is the only trust anchor: only a server holding its private key gets
    # through, whatever name it was made for (self-signed certificates often name "localhost").
    ctx.check_hostname = False
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_verify_locations(cadata=trusted_cert_pem)
    return ctx


def is_certificate_error(exc: BaseException) -> bool:
    """Whether a connection failed because the certificate did not verify."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


__all__ = ["fingerprint", "fetch_certificate", "ssl_context", "is_certificate_error"]
