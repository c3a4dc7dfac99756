"""Test helpers for app/remote: an in-memory keyring backend (no OS keyring is touched)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import keyring
import keyring.errors
from keyring.backend import KeyringBackend


class MemoryKeyring(KeyringBackend):
    """A keyring backend holding passwords in a dict."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.passwords:
            raise keyring.errors.PasswordDeleteError("no such password")
        del self.passwords[(service, username)]


@contextmanager
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@contextmanager
def no_keyring() -> Iterator[None]:
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


def is_loopback_address(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return host == "localhost"


@pytest.fixture
def sockets(monkeypatch: pytest.MonkeyPatch):
    """Every connect and name lookup is recorded; only loopback ones go through."""
    attempts: list[object] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_create, real_getaddrinfo = socket.create_connection, socket.getaddrinfo

    def guard(real):  # noqa: ANN001, ANN202
        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            address = args[1] if real in (real_connect, real_connect_ex) else args[0]
            if real is real_getaddrinfo:
                address = (args[0], args[1] if len(args) > 1 else None)
            attempts.append(address)
            if not is_loopback_address(address):
                raise OSError("network disabled by test")
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(socket.socket, "connect", guard(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(real_connect_ex))
    monkeypatch.setattr(socket, "create_connection", guard(real_create))
    monkeypatch.setattr(socket, "getaddrinfo", guard(real_getaddrinfo))
    yield attempts
    from app.models import network

    network.set_offline(False)
