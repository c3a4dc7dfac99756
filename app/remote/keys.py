"""API keys of servers, kept in the operating system's keyring (macOS Keychain, Windows Credential
Locker, the Secret Service on Linux) through the `keyring` library; never in a Lantern file.

Where no keyring is available (a Linux desktop without a secret service, a headless machine), a
key is kept in memory for this run only and `KeyStore.set` says so, so the window can tell the
user that the key will be asked for again next time.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

SERVICE = "Lantern"


def _account(server_id: str) -> str:
    return f"server:{server_id}"


class KeyStore:
    """get/set/delete a server's key. Safe to call from any thread (the worker reads keys)."""

    def __init__(self, service: str = SERVICE) -> None:
        self.service = service
        self._memory: dict[str, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keyring():  # noqa: ANN205 - the keyring module, imported on first use (it scans its backends)
        import keyring

        return keyring

    def available(self) -> bool:
        """Whether a real keyring backend is there (keys survive a restart)."""
        try:
            from keyring.backends import fail

            return not isinstance(self._keyring().get_keyring(), fail.Keyring)
        except Exception:  # noqa: BLE001 - a broken backend counts as none
            return False

    def get(self, server_id: str) -> str | None:
        with self._lock:
            if server_id in self._memory:
                return self._memory[server_id]
        try:
            return self._keyring().get_password(self.service, _account(server_id))
        except Exception as exc:  # noqa: BLE001 - keyring.errors.* and backend failures alike
            log.warning("could not read the key of server %s from the keyring: %s", server_id, exc)
            return None

    def set(self, server_id: str, key: str) -> bool:
        """Store `key`; True if it went into the OS keyring, False if it is kept for this run only."""
        try:
            if not self.available():
                raise RuntimeError("no keyring backend")
            self._keyring().set_password(self.service, _account(server_id), key)
        except Exception as exc:  # noqa: BLE001
            log.warning("no OS keyring for the key of server %s (%s): kept in memory for this run", server_id, exc)
            with self._lock:
                self._memory[server_id] = key
            return False
        with self._lock:
            self._memory.pop(server_id, None)
        return True

    def delete(self, server_id: str) -> None:
        with self._lock:
            self._memory.pop(server_id, None)
        try:
            if self.available():
                self._keyring().delete_password(self.service, _account(server_id))
        except Exception as exc:  # noqa: BLE001 - keyring.errors.PasswordDeleteError when there was none
            log.info("no key of server %s to delete from the keyring (%s)", server_id, exc)


_default = KeyStore()


def default_keys() -> KeyStore:
    """The process-wide key store (the window writes keys, the worker reads them)."""
    return _default
