"""`replan history`: recent runs and publications from the state store."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flows.commands.render import format_table


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("history", help="recent runs and published plans")
    parser.add_argument("--state", dest="state_url", help="state store URL (default SQLite file)")
    parser.add_argument("--limit", type=int, default=10)
    parser.set_defaults(func=run)


def _when(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def run(args: argparse.Namespace) -> int:
    """Print recent runs and publications; 2 for a bad store URL, 1 for an unusable store."""
    from tasks.state import StateStore, StateStoreError

    if args.limit < 1:
        print("replan history: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        store = StateStore.from_url(args.state_url)  # creates missing tables
        try:
            runs = store.recent_runs(args.limit)
            publications = store.recent_publications(args.limit)
        finally:
            store.dispose()
    except StateStoreError as exc:
        print(f"replan history: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"runs ({store.url}):")
    print(
        format_table(
            ("run", "status", "started", "finished", "prices", "error"),
            [
                (
                    str(r.run_id),
                    r.status,
                    _when(r.started_at),
                    _when(r.finished_at),
                    (r.prices_hash or "-")[:12],
                    (r.error or "").splitlines()[0][:60] if r.error else "",
                )
                for r in runs
            ],
        )
    )
    print("\npublications:")
    print(
        format_table(
            ("id", "model", "channel", "status", "run", "plan", "published", "attempts"),
            [
                (
                    str(p.publication_id),
                    p.model,
                    p.channel,
                    p.status,
                    str(p.run_id),
                    p.plan_hash[:12],
                    _when(p.published_at),
                    str(p.attempts),
                )
                for p in publications
            ],
        )
    )
    return 0
