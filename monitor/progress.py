"""Progress of long command-line work: a redrawn bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 30
#: Off a terminal, a line at every tenth of the way: a log file gets a dozen lines, not the
#: hundreds of frames a terminal redraws.
STEPS = 10


class Progress:
    """Shows ``label`` and how far along the work is.

    On a terminal the bar is redrawn in place (``\\r``); written to a file or a pipe (a log),
    each step is one line of its own, so that no file fills with carriage-return frames."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.terminal = bool(isatty and isatty())
        self._step = -1

    def show(self, fraction: float, text: str) -> None:
        """The work is ``fraction`` (0 to 1) done; ``text`` says how much (``3/10 windows``)."""
        fraction = min(max(fraction, 0.0), 1.0)
        done = fraction >= 1.0
        if self.terminal:
            bar = "#" * int(WIDTH * fraction)
            end = "\n" if done else ""
            self.stream.write(f"\r{self.label} [{bar:<{WIDTH}}] {text}{end}")
        else:
            step = int(fraction * STEPS)
            if step == self._step:
                return
            self._step = step
            self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()
