"""The `flywheel` command: the Docker-free local stack, its tools, and the operator's commands.

Each subcommand is one `cmd_*` function; `build_parser` registers them all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class CliError(Exception):
    """A clear message for the user instead of a traceback (exit status 2)."""


def _root(args: argparse.Namespace) -> Path:
    """The checkout (the template's folder); its `.env` is loaded the first time."""
    from flywheel.local.config import load_dotenv
    from flywheel.local.invoke import find_template

    if args.template:
        template = Path(args.template).resolve()
        if not template.exists():
            raise CliError(f"--template {args.template}: no such file")
        root = template.parent
    else:
        try:
            root = find_template().parent
        except FileNotFoundError as exc:
            raise CliError(f"{exc}: run flywheel from the checkout or pass --template") from exc
    if not getattr(args, "_dotenv_loaded", False):
        args._dotenv = load_dotenv(root)  # what .env set: the shell's variables win over it
        args._dotenv_loaded = True
    return root


def _state(root: Path) -> Path:
    from flywheel.local.config import state_dir

    return state_dir(root)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _handler_output() -> Iterator[None]:
    """Handlers log (and emit metrics) on stdout; stdout carries only the command's result."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _read_json(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}") from exc


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


# --- the local stack -------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    from flywheel.local.embedded import ensure_local_database
    from flywheel.services.schema import apply_migrations

    root = _root(args)
    ensure_local_database(root, apply=False)
    _print_json({"applied": apply_migrations(root / "sql")})
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    from flywheel.local.embedded import ensure_local_database
    from flywheel.local.invoke import function_spec
    from flywheel.local.stack import LocalStack
    from flywheel.local.template import read_template

    root = _root(args)
    template = read_template(root / "template.yaml")
    machines = template.resources("AWS::Serverless::StateMachine")
    functions = template.functions()
    if args.function not in functions and args.function not in machines:
        raise CliError(
            f"no function or state machine {args.function!r} in the template; functions: "
            f"{', '.join(sorted(functions))}; state machines: {', '.join(sorted(machines)) or 'none'}"
        )
    event = _read_json(args.event) if args.event else {}
    if not isinstance(event, dict):
        raise CliError(f"{args.event}: an event is a JSON object")
    # MigrateFunction reports what it applies: nothing is migrated before it runs
    migrates_itself = (
        args.function in functions and "migrate" in function_spec(args.function, root / "template.yaml").handler
    )
    ensure_local_database(root, apply=not migrates_itself)
    with LocalStack(root) as stack, _handler_output():
        result, failed = stack.run(args.function, event, sign=not args.no_sign)
    _print_json(result)
    machine = next(
        (
            name
            for name, props in machines.items()
            if any(args.function in json.dumps(v) for v in (props.get("DefinitionSubstitutions") or {}).values())
        ),
        None,
    )
    if failed and machine:
        _stderr(
            f"{args.function} runs one step of {machine} per invocation; to run the state machine with this "
            f"input: flywheel invoke {machine} -e {args.event or 'FILE'}"
        )
    return 1 if failed else 0


def cmd_start_api(args: argparse.Namespace) -> int:
    import errno

    from flywheel.local.embedded import ensure_local_database
    from flywheel.local.server import make_server
    from flywheel.local.sigv4 import SigV4Verifier
    from flywheel.local.stack import LocalStack

    root = _root(args)
    # the keys IAM routes accept: this user's credential chain, read before the emulation starts
    verifier = None if args.no_auth else SigV4Verifier.from_credential_chain()
    try:
        server = make_server(
            root / "template.yaml", args.host, args.port, verifier=verifier, log=_stderr, workers=args.workers
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError(
                f"port {args.port} on {args.host} is already in use (another `flywheel start-api`?): "
                "stop it, or choose another port with --port"
            ) from exc
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    try:
        ensure_local_database(root)
        with LocalStack(root) as stack:
            stack.start_background()
            url = f"http://{args.host}:{server.server_address[1]}"
            _stderr(f"Flywheel API on {url} ({root / 'template.yaml'})")
            for line in server.api.route_lines():
                _stderr(f"  {line}")
            if verifier is None:
                _stderr("IAM routes: open (--no-auth)")
            elif verifier.keys:
                key = next(iter(verifier.keys))
                _stderr(
                    f"IAM routes: SigV4 signatures by access key {key[:4]}...{key[-4:]} (this user's credential "
                    "chain); public webhook routes: signed as each provider signs"
                )
            else:
                _stderr(
                    "IAM routes: no AWS credentials found, so every signed request will be refused; set "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any values work locally) here and in the "
                    "client, or start with --no-auth"
                )
            _stderr(f"API documentation: {url}/docs (OpenAPI: {url}/openapi.json)")
            _stderr(f"local secrets: {stack.state / 'secrets.json'}; published events: `flywheel events tail -f`")
            _stderr("Ctrl-C (or SIGTERM) stops the API and its database")
            with contextlib.suppress(KeyboardInterrupt, Terminated):
                server.serve_forever()
    finally:
        server.server_close()
    _stderr("stopped")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flywheel.local.demo import run_demo

    run_demo(_root(args))
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from flywheel.local.aws import local_aws
    from flywheel.local.embedded import ensure_local_database
    from flywheel.local.seed import SeedConflict, seed

    root = _root(args)
    if args.fresh and os.environ.get("DATABASE_URL"):
        raise CliError(
            "--fresh recreates the embedded database; with DATABASE_URL set, recreate your database yourself"
        )
    ensure_local_database(root, fresh=args.fresh)
    log_path = _state(root) / "local.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with local_aws(root / "template.yaml"), log_path.open("a") as log, contextlib.redirect_stdout(log):
            summary = seed(root)
    except SeedConflict as exc:
        raise CliError(str(exc)) from exc
    _print_json(summary)
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from flywheel.local.secrets import local_secrets
    from flywheel.local.signing import PROVIDERS, curl_command, event_body, headers_text, sign_body, sign_event

    root = _root(args)
    provider = PROVIDERS[args.provider]
    raw = sys.stdin.buffer.read() if args.file == "-" else _read_bytes(args.file)
    event: dict[str, Any] | None = None
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        parsed = json.loads(raw)
        if isinstance(parsed, dict) and "httpMethod" in parsed and "body" in parsed:
            event = parsed
    secrets = local_secrets(_state(root))
    if args.event:
        if event is None:
            raise CliError("--event signs an API Gateway event (a file like events/webhooks_*.json)")
        event = {**event, "resource": event.get("resource") or provider.route}
        try:
            signed, _ = sign_event(event, secrets, args.org)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        print(json.dumps(signed, indent=2))
        return 0
    body = event_body(event) if event is not None else raw
    given = {k: str(v) for k, v in ((event or {}).get("headers") or {}).items()}
    try:
        url, headers = sign_body(provider, secrets, body, args.url, given, args.org)
    except ValueError as exc:
        raise CliError(f"{args.file}: {exc}") from exc
    if args.curl:
        data_file = args.file
        if event is not None or args.file == "-":
            body_path = _state(root) / f"body-{provider.name}.bin"
            body_path.write_bytes(body)
            data_file = str(body_path)
        print(curl_command(url, headers, data_file))
    else:
        _stderr(f"POST {url}")
        print(headers_text(headers))
    return 0


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc


def cmd_sam_env(args: argparse.Namespace) -> int:
    from flywheel.local.config import local_setting
    from flywheel.local.samenv import sam_environment
    from flywheel.local.secrets import local_secrets

    root = _root(args)
    port = args.port or int(local_setting("FLYWHEEL_DB_PORT"))
    secrets = local_secrets(_state(root))
    env = sam_environment(root / "template.yaml", secrets, port, host=args.db_host)
    out = Path(args.output) if os.path.isabs(args.output) else root / args.output
    out.write_text(json.dumps(env, indent=2) + "\n")
    out.chmod(0o600)
    _stderr(
        f"wrote {out} ({len(env)} functions); it points at the database on {args.db_host}:{port}: keep "
        f"`flywheel db start --port {port}` running while you use sam local"
    )
    print(out)
    return 0


def cmd_events_tail(args: argparse.Namespace) -> int:
    import time

    root = _root(args)
    journal = _state(root) / "events.jsonl"

    def wanted(line: str) -> bool:
        if not line.strip():
            return False
        event = json.loads(line)
        return (not args.detail_type or event.get("detail-type") == args.detail_type) and (
            not args.source or event.get("source") == args.source
        )

    lines = journal.read_text(encoding="utf-8").splitlines() if journal.exists() else []
    shown = [line for line in lines if wanted(line)]
    for line in shown[-args.lines :] if args.lines else shown:
        print(line, flush=True)
    if not args.follow:
        if not journal.exists():
            _stderr(f"no events published locally yet ({journal})")
        return 0
    position = journal.stat().st_size if journal.exists() else 0
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            if journal.exists() and journal.stat().st_size > position:
                with journal.open(encoding="utf-8") as handle:
                    handle.seek(position)
                    chunk = handle.read()
                    position = handle.tell()
                for line in chunk.splitlines():
                    if wanted(line):
                        print(line, flush=True)
            time.sleep(0.5)
    return 0


def cmd_training_run(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {
        k: v
        for k, v in {
            "min_quality_score": args.min_quality_score,
            "deploy": args.deploy,
            "canary_percentage": args.canary_percentage,
            "since_days": args.since_days,
            "provider": args.provider,
            "base_model": args.base_model,
            "method": args.method,
            "scope": args.scope,
            "wait_seconds": args.wait_seconds,
        }.items()
        if v is not None
    }
    if args.api or args.stack:
        return _training_run_remote(args, params)
    from flywheel.local.embedded import ensure_local_database
    from flywheel.local.server import LocalApi
    from flywheel.local.stack import LocalStack

    root = _root(args)
    ensure_local_database(root)
    api = LocalApi(root / "template.yaml")
    out = sys.stdout
    with LocalStack(root) as stack, _handler_output():
        status, _, payload = api.handle(
            "POST", "/training/run", {"Content-Type": ["application/json"]}, json.dumps(params).encode()
        )
        started = json.loads(payload)
        if status != 202:
            raise CliError(f"POST /training/run -> {status}: {started.get('message', started)}")
        _stderr(f"training run {started['run_id']} started (state machine WeeklyTrainingStateMachine)")
        step_log = (lambda line: print(line, file=out, flush=True)) if args.wait else None
        described = stack.wait_execution(started["execution_arn"], log=step_log)
        _, _, run_payload = api.handle("GET", f"/training/runs/{started['run_id']}", {}, b"")
    run = json.loads(run_payload)
    counts = (run.get("manifest") or {}).get("counts") or {}  # the run keeps its dataset's size in the manifest
    _print_json(
        {
            "run_id": run.get("run_id"),
            "status": run.get("status"),
            "execution": described["status"],
            "model_id": run.get("model_id"),
            "examples": int(counts.get("train", 0)) + int(counts.get("validation", 0)) if counts else None,
            "error": run.get("error"),
        }
    )
    return 0 if described["status"] == "SUCCEEDED" else 1


def _training_run_remote(args: argparse.Namespace, params: dict[str, Any]) -> int:
    import time

    from flywheel.client import FlywheelClient, FlywheelError

    try:
        client = FlywheelClient.from_stack(args.stack) if args.stack else FlywheelClient(args.api)
        started = client.start_training_run(**params)
        _print_json(started)
        last = None
        while args.wait:
            run = client.training_run(started["run_id"])
            if run["status"] != last:
                print(f"{run['status']}", flush=True)
                last = run["status"]
            if run["status"] in ("succeeded", "failed", "cancelled", "insufficient_data"):
                return 0 if run["status"] in ("succeeded", "insufficient_data") else 1
            time.sleep(30)
    except (FlywheelError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    return 0


def cmd_db_start(args: argparse.Namespace) -> int:
    from flywheel.local.config import local_setting
    from flywheel.local.embedded import PortInUse, start_persistent
    from flywheel.local.secrets import local_secrets

    root = _root(args)
    if os.environ.get("DATABASE_URL"):
        raise CliError("DATABASE_URL is set: the embedded database is not used")
    state = _state(root)
    port = args.port or int(local_setting("FLYWHEEL_DB_PORT"))
    try:
        status = start_persistent(state, port, local_secrets(state)["database_password"])
    except (PortInUse, RuntimeError) as exc:
        raise CliError(str(exc)) from exc
    from flywheel.local.embedded import ensure_local_database

    ensure_local_database(root)
    _print_json(status)
    _stderr("the embedded database stays up (socket and TCP) until `flywheel db stop`")
    return 0


def cmd_db_stop(args: argparse.Namespace) -> int:
    from flywheel.local.embedded import stop_persistent

    _print_json({"stopped": stop_persistent(_state(_root(args)))})
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    from flywheel.local.embedded import db_status
    from flywheel.local.secrets import local_secrets

    state = _state(_root(args))
    _print_json(db_status(state, local_secrets(state)["database_password"]))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from flywheel.local.config import effective_config

    root = _root(args)
    invalid = []
    for name, value, source in effective_config(root, getattr(args, "_dotenv", {})):
        print(f"{name}={value}  # {source}")
        if ", invalid: " in source:
            invalid.append(name)
    if invalid:
        _stderr(f"flywheel: invalid settings (every request of a function reading them fails): {', '.join(invalid)}")
    return 0


# --- organisations, experiments, datasets ---------------------------------------------------------


def cmd_org_opt_in(args: argparse.Namespace) -> int:
    from flywheel.local.embedded import ensure_local_database
    from flywheel.services.outcomes import set_training_opt_in

    ensure_local_database(_root(args))
    _print_json(set_training_opt_in(args.org_id, not args.off))
    return 0


def cmd_experiment_plan(args: argparse.Namespace) -> int:
    from flywheel.domain import experiments

    control, treatment = args.split
    config = experiments.Config.from_dict(
        {"ab_share": treatment / (control + treatment), "max_runtime_days": args.max_days}
    )
    baselines = {
        **experiments.TYPICAL_RATES,
        experiments.PRIMARY: args.baseline,
        config.canary_metric: args.bounce_rate,
    }
    result = experiments.plan(
        baselines=baselines,
        mde=args.mde,
        canary_share=args.canary_share / 100,
        weekly_volume=args.weekly_volume,
        config=config,
        source="command line",
    )
    print(
        f"baseline {args.baseline:.2%}, detectable lift {args.mde:.0%}, split {control:g}/{treatment:g} "
        "(champion/challenger)"
    )
    print(f"fixed-horizon sample: {result['fixed_horizon_sample']:,} leads (alpha 0.05, power 80 %)")
    print(
        f"sequential sample (daily looks are safe): {result['sequential_sample']:,} leads, for the primary to "
        f"win ({result['primary_sample']:,} alone) and every guardrail to be shown non-inferior "
        f"({result['guardrail_sample']:,} alone)"
    )
    print(
        f"canary at {args.canary_share:g} %: {result['canary_sample']:,} leads to catch the 1-day bounce rate "
        f"going from {args.bounce_rate:.2%} to {result['canary']['detects']:.2%} (power 95 %)"
    )
    if result["fits"] is not None:
        print(
            f"at {args.weekly_volume:,} leads a week: canary {result['canary_days']} days, A/B {result['ab_days']} "
            f"days (with the 14-day window, {result['settle_hours']:g} h for late events and the daily look), "
            f"{result['total_days']} days in all; "
            f"{'fits' if result['fits'] else 'does NOT fit'} in {args.max_days:g} days"
        )
        mde = result["mde_in_time"]
        print("smallest lift promotable within the maximum runtime: " + ("none" if mde is None else f"{mde:+.1%}"))
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    return 0


def cmd_experiment_evaluate(args: argparse.Namespace) -> int:
    """JSON lines of snapshots on stdin -> one decision per line on stdout (the Lambda's function)."""
    from flywheel.domain.experiments import decide

    status = 0
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            print(json.dumps(decide(json.loads(line))), flush=True)
        except (ValueError, KeyError, TypeError) as exc:
            print(json.dumps({"line": number, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
            status = 1
    return status


def cmd_dataset_build(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from flywheel.errors import FlywheelError
    from flywheel.local.embedded import ensure_local_database
    from flywheel.services.dataset import DatasetSpec, build_dataset
    from flywheel.services.outcomes import opted_in_organizations
    from flywheel.settings import get_settings

    ensure_local_database(_root(args))
    settings = get_settings()
    provider = "bedrock" if args.format == "bedrock" else "openai"
    spec = DatasetSpec(
        min_quality=args.min_quality,
        method=args.method,
        since=datetime.now(UTC) - timedelta(days=args.since_days),
        dataset_format="bedrock-conversation-2024" if provider == "bedrock" else "openai-chat",
        validation_fraction=settings.training_validation_fraction,
        # the chosen provider's base model: --format openai never inherits Nova's limits
        base_model=args.base_model or settings.base_model_for(provider),
        epochs=settings.training_epochs,
    )
    try:
        pii_pass = None
        if args.comprehend or settings.dataset_comprehend_pii:
            from flywheel.clients.comprehend import ComprehendPii

            pii_pass = ComprehendPii(settings.dataset_comprehend_language, settings.dataset_comprehend_min_score)
        built = build_dataset(spec, Path(args.out), settings, pii_pass)
    except FlywheelError as exc:
        print(json.dumps({"error": exc.code, "message": exc.message}), file=sys.stderr)
        return 2
    (Path(args.out) / "manifest.json").write_text(json.dumps(built.manifest, indent=2))
    failure = built.failure
    print(
        json.dumps(
            {
                "train": str(built.train_path),
                "validation": str(built.validation_path),
                "examples": built.examples,
                "valid": built.manifest["valid"] and failure is None,
                "enough": built.examples >= settings.training_min_examples,
                "base_model": spec.base_model,
                "trainable_on": built.manifest["trainable_on"],
                "problems": built.manifest["problems"],
                "residual_scan": {
                    k: built.manifest["residual_scan"][k] for k in ("lines_scanned", "hits", "offending_ids", "passed")
                },
                "cost_estimate": built.manifest["cost_estimate"],
            },
            indent=2,
        )
    )
    if failure:
        print(f"dataset build failed: {failure}", file=sys.stderr)
    if not built.examples and not opted_in_organizations():
        print(
            "no organisation has opted in to training, so there was nothing to build from: run "
            "`flywheel org opt-in ORG_ID` first (`flywheel seed` opts in the sample organisation `acme`)",
            file=sys.stderr,
        )
    return 0 if built.manifest["valid"] and failure is None else 1


def cmd_dataset_validate(args: argparse.Namespace) -> int:
    from flywheel.domain.dataset_checks import (
        FORMAT_ALIASES,
        DatasetReport,
        check_dataset,
        check_lines,
        limits_for,
    )
    from flywheel.settings import get_settings

    fmt = FORMAT_ALIASES.get(args.format, args.format)
    provider = "bedrock" if fmt.startswith("nova") else "openai"
    base_model = args.base_model or get_settings().base_model_for(provider)
    limits = limits_for(base_model, provider)
    try:
        with open(args.file, encoding="utf-8") as handle:
            report = check_lines(handle, fmt, args.token_limit or limits.example_tokens)
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    problems = (
        check_dataset(report, DatasetReport(), limits)
        if args.role == "train"
        else [f"validation file is {report.bytes} bytes; the limit is {limits.max_validation_bytes}"]
        if report.bytes > limits.max_validation_bytes
        else []
    )
    if args.role == "validation" and report.examples and not limits.validation:
        problems.append(f"{base_model} takes no validation set")
    print(json.dumps({**report.as_dict(), "base_model": base_model, "problems": problems}, indent=2))
    return 0 if report.ok and report.examples and not problems else 1


# --- replies ---------------------------------------------------------------------------------------


def _days(text: str) -> int:
    return _whole(text, 1, 3650, "a number of days")


def cmd_report(args: argparse.Namespace) -> int:
    from flywheel.errors import NotFound
    from flywheel.local.embedded import ensure_local_database
    from flywheel.services.reports import write_report

    ensure_local_database(_root(args))
    try:
        print(write_report(args.org, Path(args.out), days=args.days).resolve())
    except NotFound as exc:
        print(f"flywheel report: {exc.message}", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from flywheel.dal.connection import transaction
    from flywheel.dal.insights import active_organizations
    from flywheel.errors import NotFound
    from flywheel.local.embedded import ensure_local_database
    from flywheel.services.reports import collect
    from flywheel.settings import get_settings
    from flywheel.views.status_text import render, use_color

    ensure_local_database(_root(args))
    org = args.org
    if org is None:
        days = args.days or get_settings().report_window_days
        with transaction() as conn:
            active = active_organizations(conn, datetime.now(UTC) - timedelta(days=days))
        if len(active) != 1:
            print(
                f"{len(active)} organisations sent in the last {days} days; choose one with --org: "
                + ", ".join(active[:20])
                + (" ..." if len(active) > 20 else ""),
                file=sys.stderr,
            )
            return 2
        org = active[0]
    try:
        data = collect(org, days=args.days)
    except NotFound as exc:
        print(f"flywheel status: {exc.message}", file=sys.stderr)
        return 1
    sys.stdout.write(render(data, color=use_color(sys.stdout, dict(os.environ))))
    return 0


def _read_jsonl(path: str) -> list[tuple[int, dict | None, str | None]]:
    """(line number, object or None, error or None) for every non-empty line."""
    rows: list[tuple[int, dict | None, str | None]] = []
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
                    raise ValueError("needs an object with a non-empty text")
                rows.append((number, row, None))
            except ValueError as exc:
                rows.append((number, None, f"{type(exc).__name__}: {exc}"))
    return rows


def cmd_classify(args: argparse.Namespace) -> int:
    """Reply text on stdin -> one classification; --jsonl / --eval files; --export-corrections."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, date, datetime, timedelta

    if args.export_corrections:
        from flywheel.local.embedded import ensure_local_database
        from flywheel.services.corrections import export_corrections

        ensure_local_database(_root(args))
        since = datetime.now(UTC) - timedelta(days=args.since_days) if args.since_days else None
        for example in export_corrections(since, args.org):
            print(json.dumps({**example, "source": "correction"}, default=str, ensure_ascii=False))
        return 0

    from flywheel.services.classification import classify_text, llm_classifier
    from flywheel.settings import get_settings

    today = date.fromisoformat(args.today) if args.today else datetime.now(UTC).date()
    llm = llm_classifier()  # None (offline) unless CLASSIFIER_BACKEND / an OpenAI key says otherwise

    def one(row: dict) -> dict:
        context = {"message": row.get("message"), "lead": row.get("lead")}
        return classify_text(llm, row["text"], context, today).model_dump(mode="json")

    if not (args.jsonl or args.eval):
        text = sys.stdin.read()
        if not text.strip():
            print(json.dumps({"error": "empty_input", "message": "no reply text on stdin"}), file=sys.stderr)
            return 2
        print(json.dumps(one({"text": text}), ensure_ascii=False))
        return 0
    from flywheel.domain.labels import CATEGORIES

    try:
        rows = _read_jsonl(args.jsonl or args.eval)
    except CliError as exc:  # classify answers in JSON, errors too
        print(json.dumps({"error": "unreadable_input", "message": str(exc)}), file=sys.stderr)
        return 2
    if args.eval:  # a misspelt label would silently count as a miss
        unknown = [n for n, row, _ in rows if row and row.get("category") and row["category"] not in CATEGORIES]
        has_labels = any(row and row.get("category") for _, row, _ in rows)
        if unknown or not has_labels:
            message = (
                f"lines {unknown[:10]} have a category that is not one of {', '.join(CATEGORIES)}"
                if unknown
                else "no line has both a text and a category"
            )
            print(json.dumps({"error": "bad_labels", "message": message}), file=sys.stderr)
            return 2
    valid = [row for _, row, _ in rows if row is not None]
    with ThreadPoolExecutor(max_workers=get_settings().classifier_concurrency if llm else 1) as pool:
        results = iter(list(pool.map(one, valid)))
    if args.jsonl:
        for number, row, error in rows:  # one output line per input line, in order
            line = next(results) if row is not None else {"line": number, "error": error}
            print(json.dumps(line, ensure_ascii=False), flush=True)
        return 1 if any(error for _, _, error in rows) else 0
    from flywheel.local.train_classifier import evaluate

    labelled = [(row, result) for row, result in zip(valid, results, strict=True) if row.get("category")]
    report = evaluate([r["category"] for r, _ in labelled], [c["category"] for _, c in labelled])
    report["skipped_lines"] = [number for number, row, _ in rows if row is None or not row.get("category")]
    report["source"] = llm.model if llm else "offline"
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"accuracy {report['accuracy']:.3f} on {report['count']} replies ({report['source']})")
    print(f"{'category':16s} precision recall support")
    for category, values in report["per_category"].items():
        print(f"{category:16s} {values['precision']:9.3f} {values['recall']:6.3f} {values['support']:7d}")
    print("confusion matrix (rows: truth, columns: predicted)")
    print(" " * 16 + " ".join(f"{c[:6]:>6s}" for c in report["labels"]))
    for category, counts in zip(report["labels"], report["confusion_matrix"], strict=True):
        print(f"{category:16s}" + " ".join(f"{n:6d}" for n in counts))
    return 0


# --- input types: a clear message instead of a traceback ------------------------------------------


def _number(text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%")) / (100 if text.strip().endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def rate(text: str) -> float:
    """A proportion strictly between 0 and 1, as 0.03 or 3%."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a rate: give a proportion between 0 and 1, e.g. 0.03 (or 3%) for a 3 % rate"
        )
    return value


def lift(text: str) -> float:
    """A relative lift above 0 (at most 500 %), as 0.10 or 10%."""
    value = _number(text)
    if not 0 < value <= 5:
        raise argparse.ArgumentTypeError(f"{text!r} is not a relative lift: give e.g. 0.10 (or 10%) for +10 %")
    return value


def unit_interval(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def percentage(text: str) -> float:
    value = _number(text.removesuffix("%"))
    if not 0 < value <= 50:
        raise argparse.ArgumentTypeError(f"{text!r} must be a percentage above 0 and at most 50")
    return value


def split(text: str) -> tuple[float, float]:
    """champion/challenger traffic, e.g. 50/50 or 90/10."""
    parts = text.split("/")
    try:
        control, treatment = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        control = treatment = None
    if control is None or treatment is None or control <= 0 or treatment <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a split: give champion/challenger shares, e.g. 50/50 or 90/10 (both above 0)"
        )
    return control, treatment


def positive_number(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def _whole(text: str, minimum: int, maximum: int | None = None, what: str = "a whole number") -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if value < minimum or (maximum is not None and value > maximum):
        limits = f"{minimum}-{maximum}" if maximum is not None else f"{minimum} or more"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what} ({limits})")
    return value


def positive_int(text: str) -> int:
    return _whole(text, 1)


def non_negative_int(text: str) -> int:
    return _whole(text, 0)


def iso_date(text: str) -> str:
    from datetime import date

    try:
        date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: give YYYY-MM-DD") from None
    return text


def port(text: str) -> int:
    return _whole(text, 0, 65535, "a port number")


def tcp_port(text: str) -> int:
    value = port(text)
    if value == 0:
        raise argparse.ArgumentTypeError("give a fixed port: containers need to know it")
    return value


# --- the parser ------------------------------------------------------------------------------------


def _command(
    sub: Any, name: str, func: Callable[[argparse.Namespace], int], help_text: str, description: str | None = None
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=description or help_text)
    parser.set_defaults(func=func)
    return parser


def _group(sub: Any, name: str, help_text: str) -> Any:
    return sub.add_parser(name, help=help_text, description=help_text).add_subparsers(
        dest=f"{name}_command", required=True, metavar="COMMAND"
    )


def build_parser() -> argparse.ArgumentParser:
    from flywheel.local.signing import PROVIDERS

    parser = argparse.ArgumentParser(
        prog="flywheel",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Flywheel's local stack (the template's functions in-process, AWS emulated) and the "
        "operator's commands.",
        epilog="a first session: flywheel seed; flywheel invoke MessagesFunction -e events/messages_get.json; "
        "flywheel start-api\n`flywheel COMMAND --help` describes each command; `make` lists the make targets",
    )
    parser.add_argument("--template", help="path to template.yaml (default: found from the current folder)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _command(sub, "migrate", cmd_migrate, "apply pending SQL migrations and print what was applied")

    inv = _command(
        sub,
        "invoke",
        cmd_invoke,
        "invoke a function (or state machine) of the template in-process, "
        "like sam local invoke, against the local stack",
        "Invoke a function of the template in-process against the local stack (like sam local invoke): "
        "the result is JSON on stdout, logs on stderr. Webhook events are authenticated with the local "
        "secrets first; what the invocation sets in motion (queued replies, a training run) runs to its "
        "end before the command returns. A state machine's logical id runs that state machine with the "
        "event as its input.",
    )
    inv.add_argument(
        "function",
        help="logical id of a function (e.g. MessagesFunction) or state machine (e.g. WeeklyTrainingStateMachine)",
    )
    inv.add_argument("-e", "--event", help="JSON event file (`-` reads stdin; default: {})")
    inv.add_argument(
        "--no-sign",
        action="store_true",
        help="send webhook events as they are, without signing them with the local secrets",
    )

    api = _command(
        sub,
        "start-api",
        cmd_start_api,
        "serve the template's API routes over HTTP (like sam local "
        "start-api), with the local stack running behind them",
    )
    api.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    api.add_argument("--port", type=port, default=8081, help="port to listen on (default 8081; 0 picks a free one)")
    api.add_argument(
        "--no-auth",
        action="store_true",
        help="do not check SigV4 signatures on the IAM routes (they are checked by default)",
    )
    api.add_argument(
        "--workers",
        type=positive_int,
        default=4,
        help="requests served side by side, each on its own database connection (default 4)",
    )

    _command(sub, "demo", cmd_demo, "run the main job end to end locally")

    report = _command(sub, "report", cmd_report, "write an organisation's report as one self-contained HTML file")
    report.add_argument("--org", required=True, help="the organisation's id")
    report.add_argument("--out", default="report.html", help="where to write it (default report.html)")
    report.add_argument("--days", type=_days, help="window of messages covered (default REPORT_WINDOW_DAYS, 84)")

    status = _command(sub, "status", cmd_status, "the report's essentials in the terminal")
    status.add_argument("--org", help="the organisation's id (default: the only one that sent in the window)")
    status.add_argument("--days", type=_days, help="window of messages covered (default REPORT_WINDOW_DAYS, 84)")

    seeder = _command(sub, "seed", cmd_seed, "create the records the sample events refer to (fixed ids)")
    seeder.add_argument(
        "--fresh", action="store_true", help="drop and recreate the embedded database first (not with DATABASE_URL)"
    )

    sign = _command(
        sub,
        "sign",
        cmd_sign,
        "sign a webhook body with the local secrets: headers, a curl command, or a signed event",
        "Authenticate a webhook body as its provider would, with the local secrets: prints the headers "
        "(the URL on stderr), a ready curl command (--curl), or the signed API Gateway event "
        "(--event, for sam local invoke). FILE is the raw body or an events/webhooks_*.json event.",
    )
    sign.add_argument(
        "provider", choices=sorted(PROVIDERS), metavar="PROVIDER", help=f"one of: {', '.join(sorted(PROVIDERS))}"
    )
    sign.add_argument("file", metavar="FILE", help="the request body, or an API Gateway event (`-` reads stdin)")
    sign.add_argument(
        "--url",
        default=None,
        help="base URL of the API (default: FLYWHEEL_API_URL, "
        "http://127.0.0.1:8081); a deployed stack's ApiUrl works too",
    )
    sign.add_argument(
        "--org",
        metavar="ORG",
        help="sign as this organisation's account, where the secrets hold one credential per organisation "
        '(a JSON object {"<org_id>": ...}, README "Webhooks")',
    )
    mode = sign.add_mutually_exclusive_group()
    mode.add_argument("--curl", action="store_true", help="print a curl command that sends the body")
    mode.add_argument("--event", action="store_true", help="print the signed API Gateway event")

    sam = _command(sub, "sam-env", cmd_sam_env, "write env.json for sam local invoke/start-api --env-vars")
    sam.add_argument("-o", "--output", default="env.json", help="file to write (default env.json in the checkout)")
    sam.add_argument("--port", type=tcp_port, help="TCP port of the local database (default FLYWHEEL_DB_PORT, 54329)")
    sam.add_argument(
        "--db-host",
        default="host.docker.internal",
        help="how containers reach this machine (default host.docker.internal)",
    )

    events = _group(sub, "events", "what the functions published on the event bus locally")
    tail = _command(events, "tail", cmd_events_tail, "print the events published locally (JSON lines)")
    tail.add_argument(
        "-n",
        "--lines",
        type=non_negative_int,
        default=20,
        metavar="N",
        help="how many of the latest events (0: all; default 20)",
    )
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events until Ctrl-C")
    tail.add_argument("--detail-type", help="only events of this detail-type, e.g. ReplyNeedsAttention")
    tail.add_argument("--source", help="only events from this source, e.g. flywheel.replies")

    training = _group(sub, "training", "the weekly training pipeline")
    run = _command(
        training,
        "run",
        cmd_training_run,
        "start a training run (POST /training/run)",
        "Start a training run as POST /training/run does. Locally the weekly state machine runs in "
        "this process to its end; with --api or --stack it starts on a deployed stack.",
    )
    run.add_argument(
        "--wait", action="store_true", help="print each step as it happens (deployed: poll the run until it ends)"
    )
    run.add_argument(
        "--deploy",
        action="store_true",
        default=None,
        help="deploy the new model (challenger at --canary-percentage, or champion if none)",
    )
    run.add_argument(
        "--canary-percentage", type=percentage, metavar="PCT", help="challenger traffic when deployed (default 10)"
    )
    run.add_argument(
        "--min-quality-score", type=unit_interval, metavar="SCORE", help="minimum outcome quality (default 0.6)"
    )
    run.add_argument(
        "--since-days", type=positive_int, metavar="DAYS", help="outcomes sent within this many days (default 90)"
    )
    run.add_argument("--provider", choices=["bedrock", "openai"], help="fine-tuning provider (default: the stack's)")
    run.add_argument("--base-model", metavar="MODEL", help="base model to fine-tune (default: the stack's)")
    run.add_argument("--method", choices=["supervised", "dpo"], help="training method (default supervised)")
    run.add_argument("--scope", help="run scope; one run at a time per scope (default global)")
    run.add_argument(
        "--wait-seconds",
        type=non_negative_int,
        metavar="SECONDS",
        help="seconds between job polls (default 600; locally a Wait lasts at most FLYWHEEL_LOCAL_WAIT_S)",
    )
    target = run.add_mutually_exclusive_group()
    target.add_argument(
        "--api", metavar="URL", help="a deployed stack's ApiUrl (requests signed with your AWS credentials)"
    )
    target.add_argument("--stack", help="a deployed stack's name (its ApiUrl output is used)")

    db = _group(sub, "db", "the embedded PostgreSQL")
    db_start = _command(db, "start", cmd_db_start, "keep the embedded database running, also on TCP (for sam local)")
    db_start.add_argument("--port", type=tcp_port, help="TCP port (default FLYWHEEL_DB_PORT, 54329)")
    _command(db, "stop", cmd_db_stop, "stop the embedded database")
    _command(db, "status", cmd_db_status, "is it running, and its URLs")

    _command(sub, "config", cmd_config, "print every setting with its effective value and where it comes from")

    org = _group(sub, "org", "organisation settings")
    opt_in = _command(org, "opt-in", cmd_org_opt_in, "let an organisation's outcomes be used for training")
    opt_in.add_argument("org_id", help="the organisation's id, as sent in org_id")
    opt_in.add_argument("--off", action="store_true", help="opt the organisation out again")

    experiment = _group(sub, "experiment", "plan and evaluate experiments")
    planner = _command(experiment, "plan", cmd_experiment_plan, "sample size and weeks needed to detect a lift")
    planner.add_argument("--baseline", type=rate, required=True, help="baseline rate, e.g. 0.03 (or 3%%)")
    planner.add_argument("--mde", type=lift, required=True, help="relative lift to detect, e.g. 0.10 (or 10%%)")
    planner.add_argument(
        "--split",
        type=split,
        default=(50.0, 50.0),
        help="champion/challenger traffic split, e.g. 90/10 (default 50/50)",
    )
    planner.add_argument("--weekly-volume", type=positive_int, help="leads messaged a week")
    planner.add_argument(
        "--canary-share",
        type=percentage,
        default=10.0,
        metavar="PCT",
        help="challenger's canary share, percent (default 10)",
    )
    planner.add_argument(
        "--bounce-rate", type=rate, default=0.014, help="1-day bounce rate the canary watches (default 0.014)"
    )
    planner.add_argument("--max-days", type=positive_number, default=56.0, help="maximum runtime in days (default 56)")
    _command(experiment, "evaluate", cmd_experiment_evaluate, "decide on experiment snapshots (JSON lines on stdin)")

    classify = _command(
        sub,
        "classify",
        cmd_classify,
        "classify replies (offline unless a classifier backend is configured)",
        "Reply text on stdin -> one JSON classification.",
    )
    mode = classify.add_mutually_exclusive_group()
    mode.add_argument("--jsonl", metavar="FILE", help="objects with a text field -> one JSON classification per line")
    mode.add_argument(
        "--eval",
        metavar="FILE",
        help="objects with text and category -> accuracy, per-category precision/recall and the confusion matrix",
    )
    mode.add_argument(
        "--export-corrections",
        action="store_true",
        help="print corrected replies from the outcome store as labelled JSONL examples",
    )
    classify.add_argument("--json", action="store_true", help="--eval: print the report as JSON")
    classify.add_argument(
        "--today",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="date that relative return dates are read against (default: today)",
    )
    classify.add_argument(
        "--since-days", type=positive_int, metavar="DAYS", help="--export-corrections: only corrections this recent"
    )
    classify.add_argument("--org", help="--export-corrections: one organisation (only opted-in ones are ever read)")

    dataset = _group(sub, "dataset", "build or validate a fine-tuning dataset")
    build = _command(
        dataset, "build", cmd_dataset_build, "build train/validation JSONL and a manifest from the outcome store"
    )
    build.add_argument("--out", default="dataset", help="output folder (default ./dataset)")
    build.add_argument("--min-quality", type=unit_interval, default=0.6, help="minimum quality score (default 0.6)")
    build.add_argument(
        "--since-days", type=positive_int, default=90, help="outcomes sent within this many days (default 90)"
    )
    build.add_argument("--method", choices=["supervised", "dpo"], default="supervised", help="default supervised")
    build.add_argument(
        "--format",
        choices=["openai", "bedrock"],
        default="openai",
        help="openai chat JSONL or bedrock-conversation-2024 (default openai)",
    )
    build.add_argument("--base-model", help="default: the configured base model of the format's provider")
    build.add_argument(
        "--comprehend",
        action="store_true",
        help="second redaction pass with Amazon Comprehend DetectPiiEntities (needs AWS credentials)",
    )
    validate = _command(dataset, "validate", cmd_dataset_validate, "check a JSONL file against a provider's format")
    validate.add_argument("file", help="the JSONL file")
    validate.add_argument(
        "--format",
        default="openai-sft",
        choices=["openai-sft", "openai-dpo", "nova-sft", "nova-dpo", "supervised", "dpo", "bedrock-conversation-2024"],
        help="default openai-sft",
    )
    validate.add_argument("--base-model", help="whose limits apply (default: the format's provider's base model)")
    validate.add_argument(
        "--role", choices=["train", "validation"], default="train", help="which file of a dataset it is (default train)"
    )
    validate.add_argument("--token-limit", type=positive_int, help="per-example token limit (overrides the model's)")
    return parser


class Terminated(SystemExit):
    """SIGTERM: unwinds like Ctrl-C, so servers close and the embedded database stops at exit."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(128 + signum)


def _quiet_warnings() -> None:
    import warnings

    # noise for a command-line user: Powertools on handlers without metrics, platformdirs without XDG
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


def main(argv: list[str] | None = None) -> int:
    _quiet_warnings()
    args = build_parser().parse_args(argv)
    if getattr(args, "url", "unset") is None:
        from flywheel.local.config import local_setting

        args.url = local_setting("FLYWHEEL_API_URL")
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"flywheel: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
