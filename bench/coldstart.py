"""Cold-start import cost of every function of template.yaml, next to the stack floor.

Each measurement is a fresh Python process that imports one handler exactly as Lambda does (the
function's code folder and the layer on the path, the function's template environment, tracing
on) and reports how long the import took inside the process. The stack floor is a process that
imports only what every function needs anyway: boto3, psycopg, pydantic, and Powertools
Logger/Metrics/Tracer (created, as `flywheel.observability` does — the Tracer loads the X-Ray SDK).
Runs are interleaved (floor, every handler, floor, ...) so that machine noise hits all alike;
each figure is the median of RUNS. Bytecode is compiled first, as the layer ships it.

Last line: `worst handler: <name> <ms> ms; stack floor: <ms> ms; overhead: <ratio>x`.
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
started = time.perf_counter()
{body}
print(round((time.perf_counter() - started) * 1000, 1))
"""
FLOOR_BODY = """import boto3, psycopg, pydantic
from aws_lambda_powertools import Logger, Metrics, Tracer
Logger(); Metrics(namespace="Floor"); Tracer()"""


def run(paths: list[str], body: str, env: dict[str, str]) -> float:
    code = MEASURE.format(paths=paths, body=body)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    compileall.compile_dir(str(LAYER / "flywheel"), quiet=1)
    compileall.compile_dir(str(ROOT / "functions"), quiet=1)
    base_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                "AWS_LAMBDA_FUNCTION_NAME": "coldstart", "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench", "PYTHONDONTWRITEBYTECODE": "1"}  # noqa: S105 - fake keys
    cases: dict[str, tuple[list[str], str, dict[str, str]]] = {"(stack floor)": ([], FLOOR_BODY, base_env)}
    for logical_id, spec in sorted(read_template(ROOT / "template.yaml").functions().items()):
        module, _, attribute = spec.handler.rpartition(".")
        body = f"handler = getattr(importlib.import_module({module!r}), {attribute!r})"
        env = {**base_env, **spec.environment, "AWS_LAMBDA_FUNCTION_NAME": logical_id}
        cases[logical_id] = ([str(spec.code_dir), str(LAYER)], body, env)
    for paths, body, env in cases.values():  # warm the page cache once
        run(paths, body, env)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(RUNS):
        for name, (paths, body, env) in cases.items():
            samples[name].append(run(paths, body, env))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    floor = medians.pop("(stack floor)")
    print(f"{'function':34} {'median ms':>10} {'vs floor':>9}   (runs: {RUNS})")
    print(f"{'(stack floor)':34} {floor:10.0f} {1:9.2f}")
    for name, ms in sorted(medians.items(), key=lambda item: item[1]):
        print(f"{name:34} {ms:10.0f} {ms / floor:9.2f}")
    if os.environ.get("COLDSTART_JSON"):
        print(json.dumps({"floor": floor, **medians}))
    worst = max(medians, key=lambda name: medians[name])
    print(f"worst handler: {worst} {medians[worst]:.0f} ms; stack floor: {floor:.0f} ms; "
          f"overhead: {medians[worst] / floor:.2f}x")


if __name__ == "__main__":
    main()
