"""Benchmarks leave nothing behind: the throwaway PostgreSQL of bench/_harness.py is stopped and
its folder deleted when a benchmark ends, and also when it is stopped with SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

BENCHMARK = """import sys, time
sys.path.insert(0, "bench")
import _harness
_harness.fresh_database()
print("ready", flush=True)
if sys.argv[1] == "wait":
    time.sleep(120)
"""


def _processes_using(folder: Path) -> list[int]:
    """The ids of the processes whose command line names the folder (the server's)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in text:
            found.append(int(cmdline.parent.name))
    return found


@pytest.mark.parametrize("ending", ["exit", "sigterm"])
def test_the_throwaway_server_is_stopped_and_deleted(ending: str) -> None:
    # a short parent folder (the server's socket lives inside it), readable by the server's user
    parent = Path(tempfile.mkdtemp(prefix="fwb", dir="/tmp"))
    parent.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_DATABASE_URL", "DATABASE_URL")}
    env["TMPDIR"] = str(parent)
    process = subprocess.Popen(
        [sys.executable, "-c", BENCHMARK, "wait" if ending == "sigterm" else "end"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready", process.stderr
        [folder] = parent.glob("flywheel-bench-*")
        assert _processes_using(folder)  # the server runs from there
        if ending == "sigterm":
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
        assert code == (128 + signal.SIGTERM if ending == "sigterm" else 0)
        assert not folder.exists() and not _processes_using(folder)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in _processes_using(parent):  # a server left behind by a failing run
            os.kill(pid, signal.SIGTERM)
        shutil.rmtree(parent, ignore_errors=True)
