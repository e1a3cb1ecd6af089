"""The `flywheel` command: migrations, the Docker-free local runtime, and the demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path


def _root(args: argparse.Namespace) -> Path:
    from flywheel.local.invoke import find_template

    return Path(args.template).resolve().parent if args.template else find_template().parent


def cmd_migrate(args: argparse.Namespace) -> int:
    from flywheel.local.embedded import ensure_local_database
    from flywheel.services.schema import apply_migrations

    root = _root(args)
    ensure_local_database(root)
    applied = apply_migrations(root / "sql")
    print(json.dumps({"applied": applied}))
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    from flywheel.local.embedded import ensure_local_database
    from flywheel.local.invoke import invoke

    root = _root(args)
    event = json.loads(Path(args.event).read_text()) if args.event else {}
    ensure_local_database(root)
    # the handler's logs go to stderr; stdout carries only the result, as with `sam local invoke`
    with contextlib.redirect_stdout(sys.stderr):
        result = invoke(args.function, event, root / "template.yaml")
    print(json.dumps(result, default=str))
    return 0


def cmd_start_api(args: argparse.Namespace) -> int:
    from flywheel.local.embedded import ensure_local_database
    from flywheel.local.server import make_server

    root = _root(args)
    ensure_local_database(root)
    server = make_server(root / "template.yaml", args.host, args.port)
    print(f"serving {root / 'template.yaml'} on http://{args.host}:{server.server_address[1]} (Ctrl-C stops)",
          file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flywheel.local.demo import run_demo

    run_demo(_root(args))
    return 0


def cmd_dataset_build(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from flywheel.errors import FlywheelError
    from flywheel.local.embedded import ensure_local_database
    from flywheel.services.dataset import DatasetSpec, build_dataset
    from flywheel.settings import get_settings

    ensure_local_database(_root(args))
    settings = get_settings()
    provider = "bedrock" if args.format == "bedrock" else "openai"
    spec = DatasetSpec(min_quality=args.min_quality, method=args.method,
                       since=datetime.now(UTC) - timedelta(days=args.since_days),
                       dataset_format="bedrock-conversation-2024" if provider == "bedrock" else "openai-chat",
                       validation_fraction=settings.training_validation_fraction,
                       # the chosen provider's base model: --format openai never inherits Nova's limits
                       base_model=args.base_model or settings.base_model_for(provider),
                       epochs=settings.training_epochs)
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
    print(json.dumps({"train": str(built.train_path), "validation": str(built.validation_path),
                      "examples": built.examples, "valid": built.manifest["valid"] and failure is None,
                      "enough": built.examples >= settings.training_min_examples, "base_model": spec.base_model,
                      "trainable_on": built.manifest["trainable_on"], "problems": built.manifest["problems"],
                      "residual_scan": {k: built.manifest["residual_scan"][k]
                                        for k in ("lines_scanned", "hits", "offending_ids", "passed")},
                      "cost_estimate": built.manifest["cost_estimate"]}, indent=2))
    if failure:
        print(f"dataset build failed: {failure}", file=sys.stderr)
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
    with open(args.file, encoding="utf-8") as handle:
        report = check_lines(handle, fmt, args.token_limit or limits.example_tokens)
    problems = (check_dataset(report, DatasetReport(), limits) if args.role == "train"
                else [f"validation file is {report.bytes} bytes; the limit is {limits.max_validation_bytes}"]
                if report.bytes > limits.max_validation_bytes else [])
    if args.role == "validation" and report.examples and not limits.validation:
        problems.append(f"{base_model} takes no validation set")
    print(json.dumps({**report.as_dict(), "base_model": base_model, "problems": problems}, indent=2))
    return 0 if report.ok and report.examples and not problems else 1


def cmd_org_opt_in(args: argparse.Namespace) -> int:
    from flywheel.local.embedded import ensure_local_database
    from flywheel.services.outcomes import set_training_opt_in

    ensure_local_database(_root(args))
    print(json.dumps(set_training_opt_in(args.org_id, not args.off)))
    return 0


def cmd_experiment_plan(args: argparse.Namespace) -> int:
    from flywheel.domain import experiments

    control, treatment = (float(x) for x in args.split.split("/"))
    config = experiments.Config.from_dict({"ab_share": treatment / (control + treatment),
                                           "max_runtime_days": args.max_days})
    baselines = {**experiments.TYPICAL_RATES, experiments.PRIMARY: args.baseline,
                 config.canary_metric: args.bounce_rate}
    result = experiments.plan(baselines=baselines, mde=args.mde, canary_share=args.canary_share / 100,
                              weekly_volume=args.weekly_volume, config=config, source="command line")
    print(f"baseline {args.baseline:.2%}, detectable lift {args.mde:.0%}, split {args.split}")
    print(f"fixed-horizon sample: {result['fixed_horizon_sample']:,} leads (alpha 0.05, power 80 %)")
    print(f"sequential sample (daily looks are safe): {result['sequential_sample']:,} leads, for the primary to "
          f"win ({result['primary_sample']:,} alone) and every guardrail to be shown non-inferior "
          f"({result['guardrail_sample']:,} alone)")
    print(f"canary at {args.canary_share:g} %: {result['canary_sample']:,} leads to catch the 1-day bounce rate "
          f"going from {args.bounce_rate:.2%} to {result['canary']['detects']:.2%} (power 95 %)")
    if result["fits"] is not None:
        print(f"at {args.weekly_volume:,} leads a week: canary {result['canary_days']} days, A/B {result['ab_days']} "
              f"days (with the 14-day window, {result['settle_hours']:g} h for late events and the daily look), "
              f"{result['total_days']} days in all; "
              f"{'fits' if result['fits'] else 'does NOT fit'} in {args.max_days:g} days")
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


def _days(text: str) -> int:
    days = int(text)
    if not 1 <= days <= 3650:
        raise argparse.ArgumentTypeError("between 1 and 3650 days")
    return days


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
            print(f"{len(active)} organisations sent in the last {days} days; choose one with --org: "
                  + ", ".join(active[:20]) + (" ..." if len(active) > 20 else ""), file=sys.stderr)
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
    with open(path, encoding="utf-8") as handle:
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

    from flywheel.services.replies import classify_text, llm_classifier
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
    from flywheel.models.classification import CATEGORIES

    try:
        rows = _read_jsonl(args.jsonl or args.eval)
    except OSError as exc:
        print(json.dumps({"error": "unreadable_input", "message": str(exc)}), file=sys.stderr)
        return 2
    if args.eval:  # a misspelt label would silently count as a miss
        unknown = [n for n, row, _ in rows if row and row.get("category") and row["category"] not in CATEGORIES]
        has_labels = any(row and row.get("category") for _, row, _ in rows)
        if unknown or not has_labels:
            message = (f"lines {unknown[:10]} have a category that is not one of {', '.join(CATEGORIES)}" if unknown
                       else "no line has both a text and a category")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flywheel", description=__doc__)
    parser.add_argument("--template", help="path to template.yaml (default: found from the current folder)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="apply pending SQL migrations").set_defaults(func=cmd_migrate)

    inv = sub.add_parser("invoke", help="invoke a function of the template in-process (like sam local invoke)")
    inv.add_argument("function", help="the function's logical id, e.g. MessagesFunction")
    inv.add_argument("-e", "--event", help="JSON event file")
    inv.set_defaults(func=cmd_invoke)

    api = sub.add_parser("start-api", help="serve the template's API routes (like sam local start-api)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8081)
    api.set_defaults(func=cmd_start_api)

    sub.add_parser("demo", help="run the main job end to end locally").set_defaults(func=cmd_demo)

    report = sub.add_parser("report", help="write an organisation's report as one self-contained HTML file")
    report.add_argument("--org", required=True, help="the organisation's id")
    report.add_argument("--out", default="report.html", help="where to write it (default report.html)")
    report.add_argument("--days", type=_days, help="window of messages covered (default REPORT_WINDOW_DAYS, 84)")
    report.set_defaults(func=cmd_report)

    status = sub.add_parser("status", help="the report's essentials in the terminal")
    status.add_argument("--org", help="the organisation's id (default: the only one that sent in the window)")
    status.add_argument("--days", type=_days, help="window of messages covered (default REPORT_WINDOW_DAYS, 84)")
    status.set_defaults(func=cmd_status)

    org = sub.add_parser("org", help="organisation settings").add_subparsers(dest="org_command", required=True)
    opt_in = org.add_parser("opt-in", help="let an organisation's outcomes be used for training")
    opt_in.add_argument("org_id")
    opt_in.add_argument("--off", action="store_true", help="opt the organisation out again")
    opt_in.set_defaults(func=cmd_org_opt_in)

    experiment = sub.add_parser("experiment", help="plan and evaluate experiments").add_subparsers(
        dest="experiment_command", required=True)
    planner = experiment.add_parser("plan", help="sample size and weeks needed to detect a lift")
    planner.add_argument("--baseline", type=float, required=True, help="baseline rate, e.g. 0.03")
    planner.add_argument("--mde", type=float, required=True, help="relative lift to detect, e.g. 0.10")
    planner.add_argument("--split", default="50/50", help="champion/challenger split, e.g. 90/10")
    planner.add_argument("--weekly-volume", type=int, help="leads messaged a week")
    planner.add_argument("--canary-share", type=float, default=10, help="challenger's canary share, percent")
    planner.add_argument("--bounce-rate", type=float, default=0.014, help="1-day bounce rate the canary watches")
    planner.add_argument("--max-days", type=float, default=56, help="maximum runtime in days")
    planner.set_defaults(func=cmd_experiment_plan)
    evaluator = experiment.add_parser("evaluate", help="decide on experiment snapshots (JSON lines on stdin)")
    evaluator.set_defaults(func=cmd_experiment_evaluate)

    dataset = sub.add_parser("dataset", help="build or validate a fine-tuning dataset").add_subparsers(
        dest="dataset_command", required=True)
    build = dataset.add_parser("build", help="build train/validation JSONL and a manifest from the outcome store")
    build.add_argument("--out", default="dataset", help="output folder")
    build.add_argument("--min-quality", type=float, default=0.6)
    build.add_argument("--since-days", type=int, default=90)
    build.add_argument("--method", choices=["supervised", "dpo"], default="supervised")
    build.add_argument("--format", choices=["openai", "bedrock"], default="openai")
    build.add_argument("--base-model", help="default: the configured base model of the format's provider")
    build.add_argument("--comprehend", action="store_true",
                       help="second redaction pass with Amazon Comprehend DetectPiiEntities (needs AWS credentials)")
    build.set_defaults(func=cmd_dataset_build)
    validate = dataset.add_parser("validate", help="check a JSONL file against a provider's format rules")
    validate.add_argument("file")
    validate.add_argument("--format", default="openai-sft",
                          choices=["openai-sft", "openai-dpo", "nova-sft", "nova-dpo",
                                   "supervised", "dpo", "bedrock-conversation-2024"])
    validate.add_argument("--base-model", help="whose limits apply (default: the format's provider's base model)")
    validate.add_argument("--role", choices=["train", "validation"], default="train")
    validate.add_argument("--token-limit", type=int)
    validate.set_defaults(func=cmd_dataset_validate)

    classify = sub.add_parser("classify", help="classify replies (offline unless a classifier backend is configured)",
                              description="Reply text on stdin -> one JSON classification.")
    mode = classify.add_mutually_exclusive_group()
    mode.add_argument("--jsonl", metavar="FILE", help="objects with a text field -> one JSON classification per line")
    mode.add_argument("--eval", metavar="FILE", help="objects with text and category -> accuracy, per-category "
                                                     "precision/recall and the confusion matrix")
    mode.add_argument("--export-corrections", action="store_true",
                      help="print corrected replies from the outcome store as labelled JSONL examples")
    classify.add_argument("--json", action="store_true", help="--eval: print the report as JSON")
    classify.add_argument("--today", help="date that relative return dates are read against (default: today)")
    classify.add_argument("--since-days", type=int, help="--export-corrections: only corrections this recent")
    classify.add_argument("--org", help="--export-corrections: one organisation (only opted-in ones are ever read)")
    classify.set_defaults(func=cmd_classify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
