"""The state store's tables (SQLAlchemy Core), one row per run, plan, publication and price table.

Times are timezone-aware UTC. Plans and prices are stored as canonical JSON text so the
store never depends on the solver's or pandas' Python types.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

RUN_STATUSES: tuple[str, ...] = ("running", "completed", "failed", "invalid")
PUBLICATION_STATUSES: tuple[str, ...] = ("pending", "published", "superseded")

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("inputs_hash", sa.String(64), nullable=False),
    sa.Column("prices_hash", sa.String(64), nullable=False),
    sa.Column("parameters_json", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.CheckConstraint(
        "status IN ('running', 'completed', 'failed', 'invalid')", name="runs_status_valid"
    ),
)
sa.Index("runs_by_inputs", runs.c.inputs_hash)

plans = sa.Table(
    "plans",
    metadata,
    sa.Column("plan_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("strategy", sa.String(64), nullable=False),
    sa.Column("plan_hash", sa.String(64), nullable=False),
    sa.Column("plan_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("run_id", "model", "strategy", name="plans_one_per_strategy"),
)

publications = sa.Table(
    "publications",
    metadata,
    sa.Column("publication_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plan_id", sa.Integer, sa.ForeignKey("plans.plan_id"), nullable=False),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(200), nullable=False),
    sa.Column("plan_hash", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.CheckConstraint(
        "status IN ('pending', 'published', 'superseded')", name="publications_status_valid"
    ),
)
sa.Index(
    "publications_by_target",
    publications.c.model,
    publications.c.channel,
    publications.c.status,
)

prices = sa.Table(
    "prices",
    metadata,
    sa.Column("prices_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prices_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("dtypes_json", sa.Text, nullable=False),
    sa.Column("table_json", sa.Text, nullable=False),
)
sa.Index("prices_by_fetched_at", prices.c.fetched_at)
