"""How many threads torch computes with: as many cores as other processes leave free.

Measured on the project's 2-core machine (``bench/busy_cpu.py``): the tutorial's BUILD took
4.5 s quiet with torch's 2 threads and 55-80 s while two other processes kept both cores
busy, against 9 s with 1 thread. OpenMP's threads meet at a barrier after every operation,
so one thread the scheduler has put aside stalls the other for a whole time slice; on a busy
machine that happens after nearly every operation. One thread never waits for another, but
on a quiet machine it is 15-40 % slower than two. Neither fixed count is right, so
``CpuShare`` measures: every quarter second it reads how much CPU the other processes used
(``/proc/stat`` less this process's own time) and gives torch the cores left over.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

#: seconds between two looks at the CPU: /proc/stat counts in 1/100 s per core, so a
#: quarter second tells half a core from a whole one, and shorter windows could not
INTERVAL_S = 0.25
_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (every core added up), or None where
    there is no /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...: steal is time a hypervisor
    # took, as unavailable to us as another process's
    ticks = [int(v) for v in fields[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS_PER_S


def cpu_share(threads: int | None, reserve: int = 0, light: bool = False) -> CpuShare:
    """The ``CpuShare`` for THANOSQL_THREADS (``Settings.threads``): None ('auto') adapts,
    leaving ``reserve`` cores to this process's other threads (``light`` work, too small to
    split, gets one thread); a count pins it."""
    if threads is None:
        return CpuShare(1) if light else CpuShare(reserve=reserve)
    return CpuShare(threads)


class CpuShare:
    """Adapts torch's intra-op thread count while one statement computes.

    ``fixed`` None adapts between 1 and the count torch started with (one per core this
    process may use); a number pins that count. ``reserve`` cores are left to this process's
    own other threads (CONVERT decodes the next batch while torch embeds this one).
    ``tick()`` is cheap and is called once per training step or embedding batch; every
    ``INTERVAL_S`` it measures. Fewer threads are taken at once (a starved thread costs
    many-fold); more only when two looks in a row agree (one thread too few costs a
    fraction).
    """

    def __init__(self, fixed: int | None = None, most: int | None = None,
                 reserve: int = 0) -> None:
        self.fixed = fixed
        self.most = max(1, most or torch.get_num_threads())
        self.reserve = reserve
        self.changes = 0
        self._last: tuple[float, float, float] | None = None
        self._wanted: int | None = None

    @contextmanager
    def running(self) -> Iterator[CpuShare]:
        """Within: torch uses the chosen count; after: the count it had before."""
        saved = torch.get_num_threads()
        if self.fixed is not None:
            torch.set_num_threads(self.fixed)
        elif self.reserve:
            torch.set_num_threads(max(1, self.most - self.reserve))
        self._sample()
        try:
            yield self
        finally:
            torch.set_num_threads(saved)

    @property
    def threads(self) -> int:
        return torch.get_num_threads()

    def _sample(self) -> tuple[float, float, float] | None:
        busy = _busy_seconds()
        if busy is None:
            return None
        sample = (time.monotonic(), busy, time.process_time())
        previous, self._last = self._last, sample
        return previous

    def tick(self) -> None:
        if self.fixed is not None or self.most == 1 or self._last is None \
                or time.monotonic() - self._last[0] < INTERVAL_S:
            return
        previous = self._sample()
        if previous is None or self._last is None:
            return
        wall = self._last[0] - previous[0]
        others = ((self._last[1] - previous[1]) - (self._last[2] - previous[2])) / wall
        free = self.most - self.reserve - max(0.0, others)
        wanted = min(self.most, max(1, int(free + 0.5)))
        if wanted < self.threads or (wanted > self.threads and wanted == self._wanted):
            torch.set_num_threads(wanted)
            self.changes += 1
        self._wanted = wanted
