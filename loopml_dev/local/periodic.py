"""A daemon thread that does one thing every few seconds until the stack stops: alarms, metrics, watches.

A failing round is logged with its reason and the next one runs (a moto hiccup must not end the loop).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Periodic:
    name = "periodic"

    def __init__(self, interval_s: float, log: Callable[[str], None]) -> None:
        self._interval = interval_s
        self._log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> object:
        raise NotImplementedError

    def wanted(self) -> bool:
        """Whether there is anything to do at all (no thread otherwise)."""
        return True

    def start(self) -> None:
        if self.wanted():
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.tick()
            except Exception as exc:  # try again next round, but say why this one failed
                self._log(f"[{self.name}] {type(exc).__name__}: {exc}")
