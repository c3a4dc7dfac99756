"""The one rule for where Lantern may connect: servers the user added, and in offline mode only
those on this computer (loopback). Every connection in app/remote asks `ensure_allowed` first.

"On this computer" is decided from the address alone, without a DNS lookup (a lookup would itself
leave the machine): `localhost` and literal loopback addresses (127.0.0.0/8, ::1) qualify.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from app.remote.errors import InvalidServerAddress, OfflineBlocked


def is_offline() -> bool:
    from app.models import network   # the app-wide switch (Settings → Offline mode)

    return network.is_offline()


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def ensure_allowed(url: str) -> None:
    """Raise OfflineBlocked if offline mode forbids connecting to `url` (checked before every request)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidServerAddress(f"{url!r} is not an http:// or https:// address.")
    if is_offline() and not is_loopback_host(parts.hostname):
        raise OfflineBlocked(f"Offline mode is on, so Lantern does not connect to {parts.hostname}. "
                             "Turn offline mode off in Settings to use this server "
                             "(servers on this computer keep working offline).")
