"""The `flywheel` command: migrations, the Docker-free local runtime, and the demo."""

from __future__ import annotations

import argparse
import contextlib
import json
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
