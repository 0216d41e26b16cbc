"""The state store: runs, plans, publications and last good prices in one SQL database.

SQLite file by default (`./state/replan.sqlite`), PostgreSQL through `REPLAN_STATE_URL`.
Every method is one transaction. The publish critical section (decide → post → record) runs
inside `publish_lock`, which holds a lock in the database itself; see `publish_lock`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from tasks.state import schema
from tasks.state.hashing import PlanJson, canonical_json, plan_as_dict, plan_hash, price_table_json
from tasks.state.records import (
    LastGoodPrices,
    PlanRecord,
    PublicationRecord,
    PublishedPlan,
    RunRecord,
    StoreBusy,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

STATE_URL_ENV = "REPLAN_STATE_URL"
DEFAULT_STATE_PATH = Path("state") / "replan.sqlite"
DEFAULT_LOCK_TIMEOUT_S = 120.0
MAX_ERROR_CHARS = 4000
_BEGIN_OPTION = "replan_sqlite_begin"


def default_state_url(path: str | Path | None = None) -> str:
    """`sqlite:///<path>` for the given path, or `./state/replan.sqlite`."""
    return f"sqlite:///{Path(path) if path is not None else DEFAULT_STATE_PATH}"


_USERINFO_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^:/@\s]*):[^@\s]*@")


def redact_url(url: str | sa.URL) -> str:
    """The URL with its password replaced by `***`, safe to print (also when unparsable)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        return _USERINFO_PASSWORD.sub(r"\g<head>:***@", str(url))


class StateStoreError(RuntimeError):
    """The state store cannot be opened or used: one line that says why and the fix.

    `exit_code` is 2 for a URL that can never work (`StateUrlError`), 1 for a store that
    cannot be reached or used now (`StateStoreUnavailable`). Passwords never appear.
    """

    exit_code = 1


class StateUrlError(StateStoreError):
    """The state store URL cannot be parsed or names a database replan does not support."""

    exit_code = 2


class StateStoreUnavailable(StateStoreError):
    """The store's database is unreachable, corrupt, read-only or its folder cannot be made."""


# Errors of the statement itself (a constraint, bad SQL): the caller's to handle, not the store's.
_CALLER_ERRORS = (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.DataError)

_URL_FIX = (
    "fix: give --state (or REPLAN_STATE_URL) as sqlite:///PATH/replan.sqlite or "
    "postgresql+psycopg://USER@HOST:5432/DATABASE"
)


def _parse_state_url(chosen: str) -> sa.URL:
    try:
        parsed = sa.make_url(chosen)
        parsed.port  # noqa: B018 (a bad port is only found when read)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        raise StateUrlError(
            f"state store URL {redact_url(chosen)!r} cannot be parsed; {_URL_FIX}"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StateUrlError(
            f"state store URL scheme {parsed.drivername!r} is not supported "
            f"(only SQLite and PostgreSQL); {_URL_FIX}"
        )
    return parsed


def _first_line(error: BaseException, password: str | None) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    text = re.sub(r"^\(\S+\)\s*", "", text)  # SQLAlchemy's "(sqlite3.OperationalError) "
    if password:
        text = text.replace(password, "***")
    return text[:200]


def describe_store_error(error: BaseException, url: sa.URL) -> StateStoreError:
    """A one-line `StateStoreError` for a database error met opening or using the store."""
    shown = url.render_as_string(hide_password=True)
    orig = getattr(error, "orig", None) or error
    detail = _first_line(orig, url.password if isinstance(url.password, str) else None)
    if url.get_backend_name() == "sqlite":
        path = url.database or ":memory:"
        lowered = detail.lower()
        if "not a database" in lowered or "malformed" in lowered or "encrypted" in lowered:
            return StateStoreUnavailable(
                f"the state store {path} is not a readable SQLite database ({detail}); fix: "
                "move the file aside (a new store is created on the next run) or restore a backup"
            )
        if "readonly" in lowered or "read-only" in lowered:
            return StateStoreUnavailable(
                f"the state store {path} is read-only ({detail}); fix: make the file and its "
                "folder writable, or choose another path with --state sqlite:///PATH"
            )
        if "unable to open" in lowered:
            return StateStoreUnavailable(
                f"cannot open or create the state store {path} ({detail}); fix: make its folder "
                "writable, or choose another path with --state sqlite:///PATH"
            )
        return StateStoreUnavailable(f"the state store {path} failed: {detail}")
    return StateStoreUnavailable(
        f"cannot use the state store at {shown}: {detail}; fix: start PostgreSQL, or correct the "
        "host, port, user and database in --state / REPLAN_STATE_URL"
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_ERROR_CHARS]


def _is_busy(exc: OperationalError) -> bool:
    """True for SQLite's 'database is locked' and PostgreSQL's lock_not_available (55P03)."""
    return "database is locked" in str(exc.orig) or getattr(exc.orig, "sqlstate", None) == "55P03"


class StateStore:
    """Runs, plans, publications and prices, each write in one transaction."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        schema_name: str | None = None,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self._base_engine = engine
        self.dialect = engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported state store database: {self.dialect}")
        if schema_name is not None and self.dialect != "postgresql":
            raise ValueError("schema_name is only supported on PostgreSQL")
        self.schema_name = schema_name
        self.lock_timeout_s = lock_timeout_s
        self._engine = (
            engine.execution_options(schema_translate_map={None: schema_name})
            if schema_name
            else engine
        )

    @classmethod
    def from_url(
        cls,
        url: str | None = None,
        *,
        path: str | Path | None = None,
        schema_name: str | None = None,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        create: bool = True,
    ) -> StateStore:
        """Open the store: `url`, else `$REPLAN_STATE_URL`, else the SQLite file at `path`."""
        chosen = url or os.environ.get(STATE_URL_ENV) or default_state_url(path)
        parsed = _parse_state_url(chosen)
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                folder = Path(database).expanduser().parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StateStoreUnavailable(
                        f"cannot create the folder {folder} of the state store "
                        f"({exc.strerror or type(exc).__name__}); fix: choose a writable path "
                        "with --state sqlite:///PATH"
                    ) from None
            connect_args["timeout"] = lock_timeout_s
        try:
            engine = sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=True)
        except (sa.exc.NoSuchModuleError, ImportError) as exc:
            raise StateUrlError(
                f"state store driver {parsed.drivername!r} is not available "
                f"({type(exc).__name__}); {_URL_FIX}"
            ) from None
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine, lock_timeout_s)
        store = cls(engine, schema_name=schema_name, lock_timeout_s=lock_timeout_s)
        if create:
            store.create_all()
        return store

    @property
    def url(self) -> str:
        """The database URL with the password hidden."""
        return redact_url(self._base_engine.url)

    def __repr__(self) -> str:
        return f"StateStore({self.url!r})"

    def dispose(self) -> None:
        """Close pooled connections."""
        self._base_engine.dispose()

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One write transaction (SQLite: BEGIN IMMEDIATE, so it never upgrades mid-way)."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            if _is_busy(exc):
                raise StoreBusy(f"the state store at {self.url} stayed locked") from None
            raise describe_store_error(exc, self._base_engine.url) from None
        except sa.exc.DatabaseError as exc:  # e.g. a corrupt SQLite file
            if isinstance(exc, _CALLER_ERRORS):
                raise
            raise describe_store_error(exc, self._base_engine.url) from None

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """One read-only transaction: a consistent snapshot."""
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.DatabaseError as exc:  # OperationalError included: unreachable, corrupt
            if isinstance(exc, _CALLER_ERRORS):
                raise
            raise describe_store_error(exc, self._base_engine.url) from None

    def _advisory_key(self, name: str) -> int:
        """A signed 64-bit key for PostgreSQL's advisory locks, distinct per schema."""
        digest = hashlib.sha256(f"replan:{self.schema_name or ''}:{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _pg_xact_lock(self, conn: sa.Connection, name: str, timeout_s: float) -> None:
        """Wait at most `timeout_s` for a transaction-scoped advisory lock."""
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{max(1, int(timeout_s * 1000))}ms'")
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(self._advisory_key(name))))
        conn.exec_driver_sql("SET LOCAL lock_timeout TO DEFAULT")

    def create_all(self) -> None:
        """Create missing tables (idempotent, safe when two runs start at once)."""
        with self._write() as conn:
            if self.dialect == "postgresql":
                self._pg_xact_lock(conn, "ddl", self.lock_timeout_s)
                if self.schema_name:
                    conn.execute(sa.schema.CreateSchema(self.schema_name, if_not_exists=True))
            schema.metadata.create_all(conn, checkfirst=True)

    # -- runs -----------------------------------------------------------------------------

    def start_run(self, inputs_hash: str, prices_hash: str, parameters: Mapping[str, Any]) -> int:
        """Record a run as `running`; returns its id."""
        with self._write() as conn:
            result = conn.execute(
                schema.runs.insert().values(
                    started_at=_now(),
                    status="running",
                    inputs_hash=inputs_hash,
                    prices_hash=prices_hash,
                    parameters_json=canonical_json(dict(parameters)),
                )
            )
            return int(result.inserted_primary_key[0])

    def finish_run(
        self, run_id: int, status: str, error: str | None = None, prices_hash: str | None = None
    ) -> None:
        """Set a run's final status (`completed`, `failed` or `invalid`), error text and, once
        known, the hash of the prices it used."""
        if status not in schema.RUN_STATUSES:
            raise ValueError(f"run status must be one of {schema.RUN_STATUSES}, not {status!r}")
        values: dict[str, Any] = {"status": status, "error": _clip(error), "finished_at": _now()}
        if prices_hash is not None:
            values["prices_hash"] = prices_hash
        with self._write() as conn:
            result = conn.execute(
                schema.runs.update().where(schema.runs.c.run_id == run_id).values(**values)
            )
            if result.rowcount != 1:
                raise KeyError(f"no run {run_id}")

    def fail_abandoned_runs(self, started_before: datetime) -> int:
        """Mark runs still `running` that started before a time as failed (their process died)."""
        with self._write() as conn:
            result = conn.execute(
                schema.runs.update()
                .where(schema.runs.c.status == "running", schema.runs.c.started_at < started_before)
                .values(
                    status="failed", error="abandoned: the run never finished", finished_at=_now()
                )
            )
            return int(result.rowcount)

    def get_run(self, run_id: int) -> RunRecord:
        """One run by id."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(schema.runs).where(schema.runs.c.run_id == run_id)
            ).one_or_none()
        if row is None:
            raise KeyError(f"no run {run_id}")
        return _run_record(row)

    def recent_runs(self, limit: int = 20) -> list[RunRecord]:
        """The newest runs first."""
        query = sa.select(schema.runs).order_by(schema.runs.c.run_id.desc()).limit(limit)
        with self._read() as conn:
            return [_run_record(row) for row in conn.execute(query)]

    # -- plans ----------------------------------------------------------------------------

    def record_plans(
        self, run_id: int, model: str, plans: Mapping[str, PlanJson]
    ) -> dict[str, int]:
        """Store every strategy's plan of a run in one transaction; returns plan ids."""
        created_at = _now()
        plan_ids: dict[str, int] = {}
        with self._write() as conn:
            for strategy, plan in plans.items():
                result = conn.execute(
                    schema.plans.insert().values(
                        run_id=run_id,
                        model=model,
                        strategy=strategy,
                        plan_hash=plan_hash(plan),
                        plan_json=canonical_json(plan_as_dict(plan)),
                        created_at=created_at,
                    )
                )
                plan_ids[strategy] = int(result.inserted_primary_key[0])
        return plan_ids

    def get_plan(self, plan_id: int) -> PlanRecord:
        """One stored plan by id."""
        with self._read() as conn:
            return _get_plan(conn, plan_id)

    def run_plans(self, run_id: int) -> list[PlanRecord]:
        """Every plan a run recorded, by model then strategy."""
        query = (
            sa.select(schema.plans)
            .where(schema.plans.c.run_id == run_id)
            .order_by(schema.plans.c.model, schema.plans.c.strategy)
        )
        with self._read() as conn:
            return [_plan_record(row) for row in conn.execute(query)]

    # -- publications ---------------------------------------------------------------------

    def last_published(self, model: str, channel: str) -> PublishedPlan | None:
        """The plan the channel last saw (Slack answered 200), or None before the first."""
        with self._read() as conn:
            return _last_published(conn, model, channel)

    def published_models(self, channel: str) -> list[str]:
        """Every model key the channel has a delivered publication for, sorted."""
        pub = schema.publications
        query = (
            sa.select(pub.c.model)
            .where(pub.c.channel == channel, pub.c.status == "published")
            .distinct()
        )
        with self._read() as conn:
            return sorted(str(row.model) for row in conn.execute(query))

    def pending_publication(self, model: str, channel: str) -> PublicationRecord | None:
        """The decided but not yet delivered publication, if a post failed or is under way."""
        with self._read() as conn:
            return _pending(conn, model, channel)

    def recent_publications(self, limit: int = 20) -> list[PublicationRecord]:
        """The newest publication decisions first, whatever their status."""
        query = (
            sa.select(schema.publications)
            .order_by(schema.publications.c.publication_id.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [_publication_record(row) for row in conn.execute(query)]

    @contextmanager
    def publish_lock(
        self, model: str, channel: str, *, timeout_s: float | None = None
    ) -> Iterator[PublishSession]:
        """Hold the store's exclusive publish lock; yields the session to decide and record.

        PostgreSQL: `pg_advisory_xact_lock` on a key of (schema, model, channel), waited for at
        most `timeout_s` (`lock_timeout`). SQLite: `BEGIN IMMEDIATE`, the database's write lock,
        waited for through the busy timeout. Either way the lock lives in one open transaction:
        a second racer waits, then reads the publication the first one recorded and posts
        nothing; when the wait exceeds `timeout_s` it gets `StoreBusy`.

        The session's writes are committed when the block exits, normally or by an exception
        (so a failed post stays recorded as pending); each write is atomic on its own. A killed
        process commits nothing and the database drops its lock. On SQLite, do not write through
        other connections of the store inside the block: they would wait for this very lock.
        """
        wait_s = self.lock_timeout_s if timeout_s is None else timeout_s
        conn = self._engine.connect()
        try:
            try:
                if self.dialect == "sqlite":
                    raw = conn.connection.driver_connection
                    assert raw is not None
                    raw.execute(f"PRAGMA busy_timeout = {max(1, int(wait_s * 1000))}")
                    try:
                        conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
                        transaction = conn.begin()
                    finally:
                        raw.execute(
                            f"PRAGMA busy_timeout = {max(1, int(self.lock_timeout_s * 1000))}"
                        )
                else:
                    transaction = conn.begin()
                    self._pg_xact_lock(conn, f"publish:{model}:{channel}", wait_s)
            except OperationalError as exc:
                if _is_busy(exc):
                    raise StoreBusy(
                        f"another run holds the publish lock for {model!r} on {channel!r}"
                        f" (waited {wait_s:g} s)"
                    ) from None
                raise
            session = PublishSession(conn, model, channel)
            try:
                yield session
            except BaseException:
                session.closed = True
                try:  # keep what was recorded (a pending publication, its error)
                    transaction.commit()
                except Exception:
                    logger.exception("could not commit the publish session after an error")
                raise
            session.closed = True
            transaction.commit()
        finally:
            conn.close()

    # -- prices ---------------------------------------------------------------------------

    def save_prices(self, table: pd.DataFrame, fetched_at: datetime) -> str:
        """Keep a validated price table as the last good one; returns its content hash."""
        table_json = price_table_json(table)
        digest = hashlib.sha256(table_json.encode()).hexdigest()
        fetched_at = _utc(fetched_at) or _now()
        dtypes = {str(column): str(dtype) for column, dtype in table.dtypes.items()}
        with self._write() as conn:
            existing = conn.execute(
                sa.select(schema.prices.c.prices_id, schema.prices.c.fetched_at).where(
                    schema.prices.c.prices_hash == digest
                )
            ).one_or_none()
            if existing is None:
                conn.execute(
                    schema.prices.insert().values(
                        prices_hash=digest,
                        fetched_at=fetched_at,
                        saved_at=_now(),
                        row_count=len(table),
                        dtypes_json=canonical_json(dtypes),
                        table_json=table_json,
                    )
                )
            elif fetched_at > _utc(existing.fetched_at):  # type: ignore[operator]
                conn.execute(
                    schema.prices.update()
                    .where(schema.prices.c.prices_id == existing.prices_id)
                    .values(fetched_at=fetched_at, saved_at=_now())
                )
        return digest

    def last_good_prices(
        self, max_age: timedelta, *, now: datetime | None = None
    ) -> LastGoodPrices | None:
        """The newest saved price table fetched at most `max_age` ago, or None."""
        now = _utc(now) or _now()
        query = (
            sa.select(schema.prices)
            .where(schema.prices.c.fetched_at >= now - max_age)
            .order_by(schema.prices.c.fetched_at.desc(), schema.prices.c.prices_id.desc())
            .limit(1)
        )
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            return None
        fetched_at = _utc(row.fetched_at)
        assert fetched_at is not None
        return LastGoodPrices(_price_table(row), row.prices_hash, fetched_at, now - fetched_at)

    def prices_by_hash(self, prices_hash: str) -> pd.DataFrame | None:
        """The saved price table with this content hash (e.g. the one behind a run), or None."""
        query = sa.select(schema.prices).where(schema.prices.c.prices_hash == prices_hash)
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else _price_table(row)


def _price_table(row: Any) -> pd.DataFrame:
    """A saved price table with the dtypes it was saved with."""
    import pandas as pd

    table = pd.read_json(io.StringIO(row.table_json), orient="table")
    dtypes: dict[str, str] = json.loads(row.dtypes_json)
    return table.astype(dtypes) if len(table.columns) else table


class PublishSession:
    """Reads and writes of one (model, channel) under the held publish lock."""

    def __init__(self, conn: sa.Connection, model: str, channel: str) -> None:
        self._conn = conn
        self.model = model
        self.channel = channel
        self.closed = False

    @contextmanager
    def _step(self) -> Iterator[sa.Connection]:
        """One atomic step: a SAVEPOINT inside the lock's transaction."""
        if self.closed:
            raise RuntimeError("the publish lock was released")
        with self._conn.begin_nested():
            yield self._conn

    def last_published(self) -> PublishedPlan | None:
        """The plan the channel last saw, as of now (after the lock was taken)."""
        with self._step() as conn:
            return _last_published(conn, self.model, self.channel)

    def pending_publication(self) -> PublicationRecord | None:
        """The undelivered publication, if any."""
        with self._step() as conn:
            return _pending(conn, self.model, self.channel)

    def mark_pending(self, plan_id: int) -> int:
        """Decide to publish a plan; older undelivered decisions are superseded. Returns its id."""
        with self._step() as conn:
            plan = _get_plan(conn, plan_id)
            if plan.model != self.model:
                raise ValueError(f"plan {plan_id} is for {plan.model!r}, not {self.model!r}")
            self._supersede(conn)
            result = conn.execute(
                schema.publications.insert().values(
                    plan_id=plan_id,
                    run_id=plan.run_id,
                    model=self.model,
                    channel=self.channel,
                    plan_hash=plan.plan_hash,
                    status="pending",
                    created_at=_now(),
                    attempts=0,
                )
            )
            return int(result.inserted_primary_key[0])

    def mark_published(self, publication_id: int) -> None:
        """Record delivery: call only after Slack answered 200."""
        with self._step() as conn:
            self._update_pending(
                conn,
                publication_id,
                status="published",
                published_at=_now(),
                error=None,
                attempts=schema.publications.c.attempts + 1,
            )

    def mark_failed(self, publication_id: int, error: str) -> None:
        """Record a failed post: the publication stays pending for the next run."""
        with self._step() as conn:
            self._update_pending(
                conn,
                publication_id,
                error=_clip(error),
                attempts=schema.publications.c.attempts + 1,
            )

    def supersede_pending(self) -> int:
        """Drop undelivered decisions (the placement is back to the published one)."""
        with self._step() as conn:
            return self._supersede(conn)

    def _supersede(self, conn: sa.Connection) -> int:
        table = schema.publications
        result = conn.execute(
            table.update()
            .where(
                table.c.model == self.model,
                table.c.channel == self.channel,
                table.c.status == "pending",
            )
            .values(status="superseded")
        )
        return int(result.rowcount)

    def _update_pending(self, conn: sa.Connection, publication_id: int, **values: Any) -> None:
        table = schema.publications
        result = conn.execute(
            table.update()
            .where(
                table.c.publication_id == publication_id,
                table.c.model == self.model,
                table.c.channel == self.channel,
                table.c.status == "pending",
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise KeyError(f"no pending publication {publication_id} for this model and channel")


# -- row conversions and shared queries ---------------------------------------------------


def _configure_sqlite(engine: sa.Engine, busy_timeout_s: float) -> None:
    """Let SQLAlchemy own BEGIN (so BEGIN IMMEDIATE and SAVEPOINT work); WAL; foreign keys."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {max(1, int(busy_timeout_s * 1000))}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _run_record(row: sa.Row[Any]) -> RunRecord:
    started_at = _utc(row.started_at)
    assert started_at is not None
    return RunRecord(
        run_id=row.run_id,
        status=row.status,
        started_at=started_at,
        finished_at=_utc(row.finished_at),
        inputs_hash=row.inputs_hash,
        prices_hash=row.prices_hash,
        parameters=json.loads(row.parameters_json),
        error=row.error,
    )


def _plan_record(row: sa.Row[Any]) -> PlanRecord:
    created_at = _utc(row.created_at)
    assert created_at is not None
    return PlanRecord(
        plan_id=row.plan_id,
        run_id=row.run_id,
        model=row.model,
        strategy=row.strategy,
        plan_hash=row.plan_hash,
        plan=json.loads(row.plan_json),
        created_at=created_at,
    )


def _publication_record(row: sa.Row[Any]) -> PublicationRecord:
    created_at = _utc(row.created_at)
    assert created_at is not None
    return PublicationRecord(
        publication_id=row.publication_id,
        plan_id=row.plan_id,
        run_id=row.run_id,
        model=row.model,
        channel=row.channel,
        plan_hash=row.plan_hash,
        status=row.status,
        created_at=created_at,
        published_at=_utc(row.published_at),
        attempts=row.attempts,
        error=row.error,
    )


def _get_plan(conn: sa.Connection, plan_id: int) -> PlanRecord:
    row = conn.execute(
        sa.select(schema.plans).where(schema.plans.c.plan_id == plan_id)
    ).one_or_none()
    if row is None:
        raise KeyError(f"no plan {plan_id}")
    return _plan_record(row)


def _last_published(conn: sa.Connection, model: str, channel: str) -> PublishedPlan | None:
    pub, plan = schema.publications, schema.plans
    row = conn.execute(
        sa.select(pub, plan.c.strategy, plan.c.plan_json)
        .join(plan, plan.c.plan_id == pub.c.plan_id)
        .where(pub.c.model == model, pub.c.channel == channel, pub.c.status == "published")
        .order_by(pub.c.published_at.desc(), pub.c.publication_id.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        return None
    published_at = _utc(row.published_at)
    assert published_at is not None
    return PublishedPlan(
        publication_id=row.publication_id,
        plan_id=row.plan_id,
        run_id=row.run_id,
        model=row.model,
        channel=row.channel,
        strategy=row.strategy,
        plan_hash=row.plan_hash,
        plan=json.loads(row.plan_json),
        published_at=published_at,
    )


def _pending(conn: sa.Connection, model: str, channel: str) -> PublicationRecord | None:
    pub = schema.publications
    row = conn.execute(
        sa.select(pub)
        .where(pub.c.model == model, pub.c.channel == channel, pub.c.status == "pending")
        .order_by(pub.c.publication_id.desc())
        .limit(1)
    ).first()
    return None if row is None else _publication_record(row)
