"""System and network errors in words a user can read: never "[Errno 5] Input/output error: '/x'".

The model manager builds every message from these, so errno numbers, exception reprs and library
names stay in the log (which keeps the full exception) and out of the window and the command line.
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl

_OS_WORDS: dict[int, str] = {
    errno.ENOSPC: "the disk is full",
    errno.EACCES: "permission was denied",
    errno.EPERM: "the system does not allow it",
    errno.EROFS: "the disk is read-only",
    errno.ENOENT: "it does not exist",
    errno.EIO: "the disk reported a read or write error (it may be failing or was disconnected)",
    errno.ENOTDIR: "a file is in the way where a folder should be",
    errno.EISDIR: "a folder is in the way where a file should be",
    errno.EEXIST: "something with that name is already there",
    errno.ENAMETOOLONG: "the path is too long",
    errno.EBUSY: "it is in use by another program",
    errno.EMFILE: "too many files are open",
    errno.ENOTEMPTY: "the folder is not empty",
    errno.ECONNREFUSED: "the connection was refused",
    errno.ECONNRESET: "the connection was reset",
    errno.ECONNABORTED: "the connection was aborted",
    errno.ETIMEDOUT: "the connection timed out",
    errno.ENETUNREACH: "the network is unreachable",
    errno.EHOSTUNREACH: "the server is unreachable",
    errno.ENETDOWN: "the network is down",
    errno.EPIPE: "the connection was closed",
}
for _name, _words in (("EDQUOT", "the disk quota is used up"), ("EHOSTDOWN", "the server is down")):
    if hasattr(errno, _name):
        _OS_WORDS[getattr(errno, _name)] = _words


def os_error_text(exc: OSError) -> str:
    """'the disk is full', 'permission was denied', ... (lower case, no path, no number)."""
    if isinstance(exc, socket.gaierror):
        return "the server's name could not be looked up (no network, or no name service)"
    if isinstance(exc, ssl.SSLError):
        return "the secure connection failed"
    if exc.errno in _OS_WORDS:
        return _OS_WORDS[exc.errno]
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "the connection timed out"
    if isinstance(exc, ConnectionError):
        return "the connection failed"
    if exc.strerror:
        text = exc.strerror.strip().rstrip(".")
        return text[:1].lower() + text[1:]
    return "an unexpected system error"


def _causes(exc: BaseException):  # type: ignore[no-untyped-def]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)           # urllib.error.URLError
        if isinstance(reason, BaseException):
            yield reason
        current = current.__cause__ or current.__context__


def network_error_text(exc: BaseException) -> str:
    """Why a connection failed, in words ('the connection was refused', 'it timed out', ...)."""
    for cause in _causes(exc):
        if isinstance(cause, http.client.RemoteDisconnected):
            return "the server closed the connection without answering"
        if isinstance(cause, http.client.IncompleteRead):
            return "the connection dropped midway"
        if isinstance(cause, OSError) and (cause.errno is not None or isinstance(cause, (socket.gaierror,
                                                                                          ssl.SSLError,
                                                                                          TimeoutError))):
            return os_error_text(cause)
    for cause in _causes(exc):
        name = type(cause).__name__
        if "Timeout" in name:
            return "the connection timed out"
        if name == "RemoteProtocolError" or "disconnected" in str(cause).lower():
            return "the server closed the connection without answering"
        if name in ("ConnectError", "ConnectionError"):
            return "the connection failed"
        if "SSL" in name:
            return "the secure connection failed"
    return "the connection failed"
