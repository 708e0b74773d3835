"""Progress where no bar can show (stderr is not a terminal, as in CI): a plain line now and
then, so that a long run is not silent (some CI services stop a job silent for ten minutes)."""

from __future__ import annotations

import sys
import time

# Seconds between lines; a run shorter than this prints none.
EVERY = 60.0


class PlainProgress:
    """The interface of `cli._Progress` (`start`, `step`, `stop`, `show`, `finish`), printing
    `crosscheck: 12 of 48 case runs done, 1m05s elapsed` at most once per `every` seconds."""

    def __init__(self, every: float = EVERY, stream=None, clock=time.monotonic):
        self.every, self.stream, self.clock = every, stream or sys.stderr, clock
        self.begun = self.last = None
        self.done = self.total = 0

    def start(self, total):
        self.begun = self.last = self.clock()
        self.done, self.total = 0, total

    def step(self, label):
        """A case run starts: the ones before it are done."""
        if self.begun is None:
            self.start(0)
        self._maybe_print()
        self.done += 1

    def stop(self):
        pass

    def show(self, done: int, total: int, label: str):
        if self.begun is None:
            self.start(total)
        self.done, self.total = done, total
        self._maybe_print()

    def finish(self):
        pass

    def _maybe_print(self):
        now = self.clock()
        if now - self.last < self.every:
            return
        self.last = now
        elapsed = int(now - self.begun)
        print(f"crosscheck: {self.done} of {self.total} case runs done, {elapsed // 60}m{elapsed % 60:02d}s elapsed",
              file=self.stream, flush=True)
