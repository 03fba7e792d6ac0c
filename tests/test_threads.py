"""THANOSQL_THREADS: torch gets the cores other processes leave free (``CpuShare``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import torch

from thanosql_kernel.errors import OptionError
from thanosql_kernel.models import threads
from thanosql_kernel.models.threads import CpuShare, cpu_share
from thanosql_kernel.settings import Settings


class FakeCpu:
    """A clock, the machine's busy seconds and this process's CPU seconds, set by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = self.busy = self.own = 0.0
        monkeypatch.setattr(threads, "_busy_seconds", lambda: self.busy)
        monkeypatch.setattr(threads.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(threads.time, "process_time", lambda: self.own)

    def spend(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.now += seconds
        self.own += seconds * own_cores
        self.busy += seconds * (own_cores + other_cores)


@pytest.fixture
def two_threads() -> Iterator[None]:
    """torch's own count is the machine's (1 when pinned to one core): start from a known one."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_fewer_threads_at_once_more_only_when_two_looks_agree(monkeypatch,
                                                             two_threads: None) -> None:
    cpu = FakeCpu(monkeypatch)
    saved = torch.get_num_threads()
    with CpuShare(most=4).running() as share:
        assert share.threads == saved   # nothing measured yet: torch's own count
        cpu.spend(0.3, own_cores=2, other_cores=2.6)
        share.tick()
        assert share.threads == 1       # 4 cores less 2.6 busy elsewhere: 1 left
        cpu.spend(0.1, own_cores=1, other_cores=0)
        share.tick()                    # too soon to look again
        assert share.threads == 1
        cpu.spend(0.3, own_cores=1, other_cores=0.2)
        share.tick()
        assert share.threads == 1       # one look says 4: not yet
        cpu.spend(0.3, own_cores=1, other_cores=0.1)
        share.tick()
        assert share.threads == 4       # two looks in a row
        cpu.spend(0.3, own_cores=4, other_cores=1.4)
        share.tick()
        assert share.threads == 3       # round(4 - 1.4) = 3, taken at once
        assert share.changes == 3
    assert torch.get_num_threads() == saved   # as it was after the statement


def test_a_fixed_count_is_kept_whatever_the_load(monkeypatch) -> None:
    cpu = FakeCpu(monkeypatch)
    saved = torch.get_num_threads()
    with cpu_share(3).running() as share:
        assert share.threads == 3
        cpu.spend(1.0, own_cores=1, other_cores=8)
        share.tick()
        assert share.threads == 3 and share.changes == 0
    assert torch.get_num_threads() == saved


def test_the_setting_reads_auto_or_a_count() -> None:
    assert Settings.from_env(env={"THANOSQL_THREADS": " 3 "}).threads == 3
    assert Settings.from_env(env={"THANOSQL_THREADS": "Auto"}).threads is None
    assert Settings.from_env(env={}).threads is None


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", " "])
def test_a_bad_setting_says_what_to_write(value: str) -> None:
    with pytest.raises(OptionError, match="THANOSQL_THREADS") as err:
        Settings.from_env(env={"THANOSQL_THREADS": value})
    assert "'auto'" in str(err.value) and "default is auto" in (err.value.hint or "")


def test_spinning_processes_take_torch_down_to_one_thread() -> None:
    """Real processes, the real /proc/stat: as many spinners as cores leave no core free."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.5)
        with CpuShare(most=2).running() as share:
            deadline = time.monotonic() + 5
            x = torch.randn(256, 256)
            while share.threads != 1 and time.monotonic() < deadline:
                x = torch.tanh(x @ x.T / 256)
                share.tick()
            assert share.threads == 1
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def test_a_reserved_core_is_left_to_the_decoding_threads(monkeypatch) -> None:
    cpu = FakeCpu(monkeypatch)
    with CpuShare(most=4, reserve=1).running() as share:
        assert share.threads == 3       # from the start: CONVERT decodes while it embeds
        cpu.spend(0.3, own_cores=4, other_cores=0.0)
        share.tick()
        assert share.threads == 3
        cpu.spend(0.3, own_cores=3, other_cores=1.8)
        share.tick()
        assert share.threads == 1       # 4 - 1 reserved - 1.8 elsewhere: round(1.2) = 1
    with CpuShare(most=2, reserve=1).running() as share:
        assert share.threads == 1
