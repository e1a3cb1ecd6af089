"""Cold-start import cost of every function of template.yaml, next to the stack floor.

Each measurement is a fresh Python process that imports one handler exactly as Lambda does (the
function's code folder and the layer on the path, the function's template environment, and
LAMBDA_TASK_ROOT set, which is what turns Powertools' Tracer on: it loads the X-Ray SDK and patches
botocore) and reports how long the import took inside the process. The stack floor is a process
that imports only what every function needs anyway: boto3, psycopg, pydantic, and Powertools
Logger/Metrics/Tracer, created as `flywheel.observability` creates them (same environment, so the
Tracer is on and patches botocore there too).
Runs are interleaved (floor, every handler, floor, ...) so that machine noise hits all alike;
each figure is the median of RUNS. Bytecode is compiled first, as the layer ships it.

Two clocks: wall-clock time, and the CPU time (user + system) the process spent importing. A
Lambda cold start has its vCPU to itself, so there the two agree; on a shared machine the wall
clock also counts the time spent waiting for a core (at a load of 7 on 2 cores, more than half of
it), which swings the ratio by +-0.2 from one run to the next. The headline is the CPU time; the
wall-clock line is printed just before it.

Last line: `worst handler: <name> <ms> ms; stack floor: <ms> ms; overhead: <ratio>x` (CPU time).
"""

from __future__ import annotations

import compileall
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "flywheel"
sys.path.insert(0, str(LAYER))

from flywheel.local.template import read_template  # noqa: E402

RUNS = int(os.environ.get("COLDSTART_RUNS", "7"))

MEASURE = """
import importlib, sys, time
sys.path[:0] = {paths!r}
started, cpu = time.perf_counter(), time.process_time()
{body}
print(round((time.perf_counter() - started) * 1000, 1), round((time.process_time() - cpu) * 1000, 1))
"""
FLOOR_BODY = """import boto3, psycopg, pydantic
from aws_lambda_powertools import Logger, Metrics, Tracer
Logger(); Metrics(namespace="Floor"); assert not Tracer(patch_modules=["botocore"]).disabled"""


def run(paths: list[str], body: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall-clock ms, CPU ms) of one import in a fresh process."""
    code = MEASURE.format(paths=paths, body=body)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def main() -> None:
    compileall.compile_dir(str(LAYER / "flywheel"), quiet=1)
    compileall.compile_dir(str(ROOT / "functions"), quiet=1)
    base_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "coldstart",
        "LAMBDA_TASK_ROOT": str(ROOT),
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "PYTHONDONTWRITEBYTECODE": "1",
    }  # noqa: S105 - fake keys
    cases: dict[str, tuple[list[str], str, dict[str, str]]] = {"(stack floor)": ([], FLOOR_BODY, base_env)}
    for logical_id, spec in sorted(read_template(ROOT / "template.yaml").functions().items()):
        module, _, attribute = spec.handler.rpartition(".")
        body = f"handler = getattr(importlib.import_module({module!r}), {attribute!r})"
        env = {
            **base_env,
            **spec.environment,
            "AWS_LAMBDA_FUNCTION_NAME": logical_id,
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
        }
        cases[logical_id] = ([str(spec.code_dir), str(LAYER)], body, env)
    for paths, body, env in cases.values():  # warm the page cache once
        run(paths, body, env)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(RUNS):
        for name, (paths, body, env) in cases.items():
            samples[name].append(run(paths, body, env))
    wall = {name: statistics.median(w for w, _ in values) for name, values in samples.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in samples.items()}
    floor_wall, floor_cpu = wall.pop("(stack floor)"), cpu.pop("(stack floor)")
    print(
        f"{'function':34} {'wall ms':>8} {'vs floor':>9} {'CPU ms':>8} {'vs floor':>9}   (median of {RUNS} runs; "
        f"load average {os.getloadavg()[0]:.1f})"
    )
    print(f"{'(stack floor)':34} {floor_wall:8.0f} {1:9.2f} {floor_cpu:8.0f} {1:9.2f}")
    for name in sorted(cpu, key=lambda item: cpu[item]):
        print(
            f"{name:34} {wall[name]:8.0f} {wall[name] / floor_wall:9.2f} {cpu[name]:8.0f} {cpu[name] / floor_cpu:9.2f}"
        )
    if os.environ.get("COLDSTART_JSON"):
        print(json.dumps({"wall": {"floor": floor_wall, **wall}, "cpu": {"floor": floor_cpu, **cpu}}))
    worst_wall = max(wall, key=lambda name: wall[name])
    print(
        f"wall clock: worst handler: {worst_wall} {wall[worst_wall]:.0f} ms; stack floor: {floor_wall:.0f} ms; "
        f"overhead: {wall[worst_wall] / floor_wall:.2f}x"
    )
    worst = max(cpu, key=lambda name: cpu[name])
    print(
        f"worst handler: {worst} {cpu[worst]:.0f} ms; stack floor: {floor_cpu:.0f} ms; "
        f"overhead: {cpu[worst] / floor_cpu:.2f}x"
    )


if __name__ == "__main__":
    main()
