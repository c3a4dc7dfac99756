"""The Qt binding itself: signal emission must not corrupt Python's reference counts.

PySide6 6.12.0 drops a reference to None (or True/False) on emissions like these; after a few
thousand, as a streamed reply makes, the interpreter aborts with "deallocating None".
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Sender(QObject):
    number = Signal(int)
    payload = Signal(object)


class _Receiver(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def got(self, *_args: object) -> None:
        self.seen += 1


def test_signal_emission_keeps_reference_counts(qapp) -> None:  # noqa: ANN001
    sender, receiver = _Sender(), _Receiver()
    sender.number.connect(receiver.got)
    sender.payload.connect(receiver.got)
    before = sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False)
    for i in range(2000):
        sender.number.emit(i)
        sender.payload.emit(None)
    after = sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False)
    assert receiver.seen == 4000
    assert all(abs(b - a) < 20 for a, b in zip(before, after)), (before, after)   # 6.12.0: None -120
