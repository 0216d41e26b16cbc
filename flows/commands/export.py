"""`replan export --out DIR`: the published fleet plan (or a run's plan) as launch specs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write the published plan as SkyPilot/vLLM launch specs",
        description=(
            "Write the published fleet plan (default, --latest) or one run's exact plan "
            "(--run N) into DIR: one SkyServe service YAML per replica group (a SkyPilot "
            "JobGroup per replica where stages mix pools), plan.json and a README saying what "
            "to launch and stop. DIR must be missing, empty or an earlier export."
        ),
    )
    parser.add_argument("--state", dest="state_url", help="state store URL (default SQLite file)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run", type=int, dest="run_id", help="export this run's plan")
    which.add_argument(
        "--latest", action="store_true", help="export the latest published plan (default)"
    )
    parser.add_argument("--strategy", default="exact", help="with --run: which plan [exact]")
    parser.add_argument("--format", choices=("skypilot", "json"), default="skypilot")
    parser.add_argument(
        "--hf-model",
        action="append",
        default=[],
        metavar="NAME=ORG/REPO",
        help="Hugging Face id for a plan model (repeatable)",
    )
    parser.add_argument(
        "--inventory",
        help="inventory whose KV-cache reserve sets vLLM's --max-model-len/--max-num-seqs",
    )
    parser.add_argument("--out", required=True, help="folder to write")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"replan export: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _hf_models(pairs: list[str]) -> dict[str, str]:
    table: dict[str, str] = {}
    for pair in pairs:
        name, sep, hf_id = pair.partition("=")
        if not sep or not name or not hf_id:
            raise ValueError(f"--hf-model must be NAME=ORG/REPO, got {pair!r}")
        table[name] = hf_id
    return table


def _open_store(url: str | None) -> Any:
    import sqlalchemy as sa

    from tasks.state import STATE_URL_ENV, StateStore, default_state_url

    chosen = url or os.environ.get(STATE_URL_ENV) or default_state_url()
    parsed = sa.make_url(chosen)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not Path(database).expanduser().is_file():
            raise FileNotFoundError(f"no state store at {database}")
    return StateStore.from_url(chosen, create=False)


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from tasks.export import ExportError, serving_limits, write_export
    from tasks.export.source import PlanSource
    from tasks.inventory import load_inventory

    try:
        hf_models = _hf_models(args.hf_model)
        limits = serving_limits(load_inventory(args.inventory).models) if args.inventory else None
        store = _open_store(args.state_url)
    except ArgumentError as exc:  # the URL itself is not echoed: it may hold a password
        return _fail(f"--state: {exc}")
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    try:
        source = PlanSource(store)
        chosen = (
            source.run(args.run_id, args.strategy) if args.run_id is not None else source.latest()
        )
        previous = source.previous(chosen.run_id)
        result = write_export(
            chosen.plan,
            args.out,
            previous_plan_json=previous.plan if previous else None,
            format=args.format,
            hf_models=hf_models,
            serving_limits=limits,
            notes=chosen.notes,
        )
    except ExportError as exc:
        return _fail(str(exc))
    except SQLAlchemyError as exc:
        first = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0]
        return _fail(f"{store.url}: cannot read the state store ({first})")
    finally:
        store.dispose()
    print(f"{result.summary()}; from the {chosen.description}")
    if previous is not None:
        print(f"changes are against the {previous.description}")
    if "README.md" in result.files:
        print(f"next: read {Path(result.out_dir) / 'README.md'}")
    return EXIT_OK
