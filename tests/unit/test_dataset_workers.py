"""The forked build workers (`_in_workers`) end every way a build can end: answers come back in
order, a worker that fails or is killed fails the build with the reason, a build stopped early (or
whose streaming process dies) leaves no worker behind, and nothing waits forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

import pytest

from flywheel.services import dataset as dataset_service
from tests.conftest import ROOT, deadline


class Echo:
    """A builder that answers each batch with its items (and fails, dies or dawdles on request)."""

    def __init__(self, fail_on: object = None, die_on: object = None, seconds: float = 0.0) -> None:
        self.fail_on, self.die_on, self.seconds = fail_on, die_on, seconds

    def build(self, items: Sequence[Any]) -> list[Any]:
        time.sleep(self.seconds)
        if self.die_on in items:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
        if self.fail_on in items:
            raise ValueError(f"cannot build {self.fail_on}")
        return list(items)


class Unreadable:
    """An item the worker cannot unpickle."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, ())


def _refuse() -> None:
    raise ValueError("this item cannot be read back")


def built(items: list[Any], builder: Any, workers: int, size: int) -> list[Any]:
    out: list[Any] = []
    with deadline(30, "the build hung"):
        batch: Any
        for batch in dataset_service._in_workers(iter(items), builder, workers, size=size):
            out += batch
    return out


@pytest.mark.parametrize("rows", [0, 1, 2, 5, 41])
@pytest.mark.parametrize("workers", [2, 3])
def test_every_item_comes_back_once_in_order(rows: int, workers: int) -> None:
    items = [f"{i}:" + "x" * (200_000 if i % 7 == 3 else 10) for i in range(rows)]  # some over a pipe's buffer
    assert built(items, Echo(), workers, 2) == items


class FrozenCount:
    """A builder that answers with how many objects its process's garbage collector skips."""

    def build(self, items: Sequence[Any]) -> list[Any]:
        import gc

        return [gc.get_freeze_count()] * len(items)


def test_workers_skip_what_they_inherit_in_collections_and_the_streaming_process_is_left_as_it_was() -> None:
    import gc

    assert gc.get_freeze_count() == 0
    answers = built(list(range(6)), FrozenCount(), 2, 2)
    assert min(answers) > 10_000  # the modules, classes and caches forked with the worker
    assert gc.get_freeze_count() == 0  # frozen while building, and only then
    batches = dataset_service._in_workers(iter(range(40)), cast(Any, Echo(fail_on=3)), 2, size=1)
    with pytest.raises(RuntimeError):
        list(batches)
    assert gc.get_freeze_count() == 0  # a failed build too


def test_a_failing_worker_fails_the_build_with_its_reason() -> None:
    with pytest.raises(RuntimeError, match="dataset build worker failed: ValueError: cannot build 25"):
        built(list(range(40)), Echo(fail_on=25), 2, 8)


def test_a_killed_worker_fails_the_build_with_a_clear_reason() -> None:
    with pytest.raises(RuntimeError, match=r"worker .* ended without an answer \(killed by signal 9"):
        built(list(range(40)), Echo(die_on=25), 2, 8)


def test_an_item_a_worker_cannot_read_fails_the_build_instead_of_hanging() -> None:
    with pytest.raises(RuntimeError, match="this item cannot be read back"):
        built([1, 2, 3, Unreadable(), 5, 6], Echo(), 2, 1)


def test_a_build_stopped_early_lets_its_workers_end_at_once() -> None:
    """The consumer stops (an error, the time check) while large answers are in flight: each worker
    sees that its answer has no reader and ends by itself; none is left to be killed."""
    import multiprocessing

    rows = ["x" * 300_000 for _ in range(100)]  # each answer is larger than a pipe holds
    batches = dataset_service._in_workers(iter(rows), cast(Any, Echo(seconds=0.2)), 2, size=4)
    with deadline(60, "the build hung"):
        next(batches)
        workers = multiprocessing.active_children()
        assert len(workers) == 2
        batches.close()
    assert [w.exitcode for w in workers if w.exitcode is None or w.exitcode < 0] == []  # ended, not killed


def test_workers_end_when_the_streaming_process_is_killed() -> None:
    script = (
        "import sys, time\n"
        "from flywheel.services import dataset as d\n"
        "from tests.unit.test_dataset_workers import Echo\n"
        "batches = d._in_workers(iter(range(10**9)), Echo(seconds=0.05), 2, size=8)\n"
        "next(batches)\n"
        "import multiprocessing\n"
        "print(' '.join(str(p.pid) for p in multiprocessing.active_children()), flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'flywheel'}{os.pathsep}{ROOT}"}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        parent.kill()
        parent.wait()

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    waited = time.monotonic()
    while any(alive(p) for p in pids) and time.monotonic() - waited < 20:
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    for pid in left:  # do not leave them behind when this fails
        os.kill(pid, signal.SIGKILL)
    assert left == [], "workers outlived their streaming process"
