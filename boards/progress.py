"""Progress of a running Yosys or nextpnr job, read from its log.

A full ECP5-85F build runs for an hour and more, Yosys and nextpnr writing only to their logs.
:class:`LogWatch` reads those logs while the tools run and reports each new phase (a Yosys
pass, nextpnr's packing, placement, routing) at once, and how far the phase has come at most
every ``period`` seconds.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["LogWatch", "log_status"]

_YOSYS_PASS = re.compile(r"^\d+(?:\.\d+)*\. Executing (.+?) (?:pass|backend)\b")
_HEAP = re.compile(r"at iteration #(\d+), type \S+: wirelen solved = \d+, spread = \d+, "
                   r"legal = (\d+)")
_ANNEAL = re.compile(r"at iteration #(\d+): temp = [\d.]+, timing cost = \d+, wirelen = (\d+)")
# router1: "iterations | (re-)routed arcs with and without rip-up | delta | remaining arcs |"
_ROUTER1 = re.compile(r"^Info:\s+(\d+) \|\s+\d+\s+\d+ \|\s+\d+\s+\d+ \|\s+(\d+)\|")
# router2: "iter=N wires=W overused=O overuse=U archfail=…"
_ROUTER2 = re.compile(r"iter=(\d+) wires=(\d+) overused=(\d+)")
_PHASES = (
    ("Packing", "nextpnr: packing"),
    ("Running main analytical placer", "nextpnr: placing"),
    ("Running simulated annealing placer", "nextpnr: placing (annealing)"),
    ("Routing..", "nextpnr: routing"),
    ("Running router2", "nextpnr: routing"),
    ("Program finished normally", "nextpnr: done"),
)


def _n(value: str) -> str:
    """A count with thin groups of three digits: ``1 372 205``."""
    return f"{int(value):,}".replace(",", " ")


def log_status(text: str) -> tuple[str, str] | None:
    """``(phase, detail)`` of a Yosys or nextpnr log so far, or ``None`` before its first
    phase. ``phase`` changes with each Yosys pass and each nextpnr step; ``detail`` says how
    far the step has come (placer iteration and wire length, arcs or wires left to route)."""
    for line in reversed(text.splitlines()):
        if (hit := _YOSYS_PASS.match(line)) is not None:
            return f"Yosys: {hit.group(1)}", ""
        if (hit := _HEAP.search(line)) is not None:
            return ("nextpnr: placing",
                    f"iteration {hit.group(1)}, legal wire length {_n(hit.group(2))}")
        if (hit := _ANNEAL.search(line)) is not None:
            return ("nextpnr: placing (annealing)",
                    f"iteration {hit.group(1)}, wire length {_n(hit.group(2))}")
        if (hit := _ROUTER1.match(line)) is not None:
            return "nextpnr: routing", f"{_n(hit.group(2))} arcs left"
        if (hit := _ROUTER2.search(line)) is not None:
            return ("nextpnr: routing", f"iteration {hit.group(1)}, {_n(hit.group(3))} of "
                                        f"{_n(hit.group(2))} wires overused")
        for marker, phase in _PHASES:
            if marker in line:
                return phase, ""
    return None


class LogWatch:
    """Report a job's progress from its logs while it runs (a context manager).

    Parameters
    ----------
    logs : sequence of path-like
        The logs the job writes, in the order it writes them; the last one that exists is
        read.
    say : callable
        Called with each progress line.
    period : float
        Seconds between two reports of the same phase (a new phase is reported at once).
    poll : float
        Seconds between two reads of the logs.
    clock : callable
        The time in seconds (``time.monotonic``).
    """

    def __init__(self, logs: Sequence, say: Callable[[str], None], *, period: float = 120.0,
                 poll: float = 5.0, clock: Callable[[], float] = time.monotonic):
        if not callable(say):
            raise TypeError(f"say must be callable, not {type(say).__name__}")
        if not period > 0 or not poll > 0:
            raise ValueError(f"period and poll must be positive, not {period!r}, {poll!r}")
        self._logs = [Path(p) for p in logs]
        self._say = say
        self._period = float(period)
        self._poll = float(poll)
        self._clock = clock
        self._stop = threading.Event()
        self._thread = None

    def check(self):
        """Read the logs once and report what is new (the watcher's thread calls this)."""
        now = self._clock()
        existing = [p for p in self._logs if p.is_file()]
        if not existing:
            return
        try:
            text = existing[-1].read_text(errors="replace")
        except OSError:
            return
        status = log_status(text)
        if status is None or status == self._last:
            return
        phase, detail = status
        if phase != self._last_phase or now - self._said_at >= self._period:
            took = now - self._start
            took = f"{took:.0f} s" if took < 60 else f"{took / 60:.0f} min"
            self._say(f"{phase}" + (f", {detail}" if detail else "") + f" ({took})")
            self._last, self._last_phase, self._said_at = status, phase, now

    def _run(self):
        while not self._stop.wait(self._poll):
            self.check()

    def __enter__(self):
        self._start = self._said_at = self._clock()
        self._last = self._last_phase = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="log-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False
