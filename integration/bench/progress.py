"""Progress display on stderr: one line per case, rewritten in place as it runs.

Design: on a terminal the current case's line is redrawn (\\r, clear to end
of line) with its step and elapsed time, and left in place with a short
result when the case ends. Off a terminal (CI, pytest's pipes) only the
final line of each case is written, so logs get one line per case instead
of a stream of carriage returns.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.total = total
        self.index = 0
        self.name = ""
        self.started = 0.0

    def _write(self, text: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _prefix(self) -> str:
        width = len(str(self.total))
        return f"[{self.index:>{width}}/{self.total}] {self.name:<15}"

    def start(self, name: str) -> None:
        self.index += 1
        self.name = name
        self.started = time.monotonic()
        self.step("starting")

    def step(self, text: str) -> None:
        self._write(f"{self._prefix()} {time.monotonic() - self.started:5.1f}s  {text} ...", False)

    def done(self, summary: str) -> None:
        self._write(f"{self._prefix()} {time.monotonic() - self.started:5.1f}s  ok    {summary}", True)

    def fail(self, error: str) -> None:
        first = error.strip().splitlines()[0] if error.strip() else "failed"
        self._write(f"{self._prefix()} {time.monotonic() - self.started:5.1f}s  FAIL  {first[:200]}", True)

    def message(self, text: str) -> None:
        self._write(text, True)
