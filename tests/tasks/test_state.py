"""The state store on a SQLite file and, when REPLAN_TEST_POSTGRES_URL is set, on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.state import (
    STATE_URL_ENV,
    PublishedPlan,
    PublishResult,
    StateStore,
    StoreBusy,
    default_state_url,
    plan_hash,
    prices_hash,
    publish_once,
    redact_url,
    stable_hash,
)

POSTGRES_URL = os.environ.get("REPLAN_TEST_POSTGRES_URL")
REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "llama-3-8b"
CHANNEL = "slack:#fleet"

StoreFactory = Callable[..., StateStore]


def make_plan(tp: int = 1, count: int = 1, tokens_per_s: float = 985.0) -> dict[str, Any]:
    """A plan as the spec's command-line JSON object."""
    return {
        "strategy": "exact",
        "status": "optimal",
        "tokens_per_s": tokens_per_s * count,
        "cost_per_hour": 0.3 * count,
        "cost_per_token": 8.46e-08,
        "replicas": [
            {
                "count": count,
                "cloud": "aws",
                "region": "us-east-1",
                "tokens_per_s": tokens_per_s,
                "cost_per_hour": 0.3,
                "stages": [{"pool": "aws/us-east-1/V100", "gpu": "V100", "tp": tp, "layers": 32}],
            }
        ],
    }


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not POSTGRES_URL, reason="REPLAN_TEST_POSTGRES_URL not set"),
            ],
        ),
    ]
)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores on one fresh database: a SQLite file, or a PostgreSQL schema of its own."""
    opened: list[StateStore] = []
    if request.param == "sqlite":
        url, schema_name = default_state_url(tmp_path / "state" / "replan.sqlite"), None
    else:
        assert POSTGRES_URL
        url, schema_name = POSTGRES_URL, f"replan_test_{uuid.uuid4().hex[:12]}"

    def factory(**kwargs: Any) -> StateStore:
        store = StateStore.from_url(url, schema_name=schema_name, **kwargs)
        opened.append(store)
        return store

    factory.url = url  # type: ignore[attr-defined]
    factory.schema_name = schema_name  # type: ignore[attr-defined]
    yield factory
    for store in opened:
        store.dispose()
    if schema_name:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
        engine.dispose()


@pytest.fixture
def store(store_factory: StoreFactory) -> StateStore:
    return store_factory()


def new_run_with_plan(store: StateStore, plan: dict[str, Any], inputs: str = "in") -> int:
    """A run that recorded `plan` as its exact plan; returns the plan id."""
    run_id = store.start_run(stable_hash(inputs), stable_hash("prices"), {"inputs": inputs})
    return store.record_plans(run_id, MODEL, {"exact": plan, "weighted": make_plan(tp=2)})["exact"]


def publish(
    store: StateStore,
    plan: dict[str, Any],
    post: Callable[[PublishedPlan | None], object] = lambda _previous: None,
    inputs: str = "in",
) -> PublishResult:
    """A new run with `plan` as its exact plan goes through decide → post → record."""
    plan_id = new_run_with_plan(store, plan, inputs)
    return publish_once(store, plan_id=plan_id, channel=CHANNEL, post=post)


def refused(_previous: PublishedPlan | None) -> None:
    raise ConnectionError("the Slack webhook could not be reached")


# -- opening --------------------------------------------------------------------------------


def test_default_path_creates_parent_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STATE_URL_ENV, raising=False)
    store = StateStore.from_url()
    try:
        assert (tmp_path / "state" / "replan.sqlite").is_file()
        assert store.url == "sqlite:///state/replan.sqlite"
    finally:
        store.dispose()


def test_env_url_overrides_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_URL_ENV, f"sqlite:///{tmp_path}/from-env/db.sqlite")
    store = StateStore.from_url(path=tmp_path / "ignored.sqlite")
    store.dispose()
    assert (tmp_path / "from-env" / "db.sqlite").is_file()
    assert not (tmp_path / "ignored.sqlite").exists()


def test_urls_are_printed_without_password() -> None:
    url = "postgresql+psycopg://replan:hunter2@db.internal:5432/state"
    assert "hunter2" not in redact_url(url)
    assert "***" in redact_url(url)


def test_create_all_is_idempotent(store: StateStore) -> None:
    store.create_all()
    store.create_all()
    assert store.recent_runs() == []


# -- runs and plans -------------------------------------------------------------------------


def test_runs_are_kept_with_status_and_error(store: StateStore) -> None:
    first = store.start_run("a" * 64, "b" * 64, {"model": MODEL, "max_age_h": 24})
    second = store.start_run("c" * 64, "d" * 64, {})
    store.finish_run(first, "completed")
    store.finish_run(second, "failed", error="the Slack webhook answered 500")

    newest, oldest = store.recent_runs(limit=10)
    assert (newest.run_id, oldest.run_id) == (second, first)
    assert oldest.status == "completed" and oldest.error is None
    assert oldest.parameters == {"model": MODEL, "max_age_h": 24}
    assert oldest.inputs_hash == "a" * 64 and oldest.prices_hash == "b" * 64
    assert newest.status == "failed" and newest.error == "the Slack webhook answered 500"
    assert newest.finished_at is not None and newest.finished_at.tzinfo is not None
    assert store.recent_runs(limit=1) == [newest]

    with pytest.raises(ValueError, match="status"):
        store.finish_run(first, "done")
    with pytest.raises(KeyError):
        store.finish_run(999_999, "failed")


def test_runs_that_never_finished_can_be_failed(store: StateStore) -> None:
    died = store.start_run("i", "p", {})
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    done = store.start_run("i", "p", {})
    store.finish_run(done, "completed")
    assert store.fail_abandoned_runs(started_before=cutoff) == 1
    assert store.get_run(died).status == "failed" and "abandoned" in (
        store.get_run(died).error or ""
    )
    assert store.get_run(done).status == "completed"


def test_every_plan_of_every_strategy_is_kept(store: StateStore) -> None:
    run_id = store.start_run("i", "p", {})
    ids = store.record_plans(
        run_id, MODEL, {"exact": make_plan(), "iterative": make_plan(tp=2), "weighted": "{}"}
    )
    plans = {plan.strategy: plan for plan in store.run_plans(run_id)}
    assert set(plans) == {"exact", "iterative", "weighted"}
    assert plans["exact"].plan == make_plan()
    assert plans["exact"].plan_id == ids["exact"]
    assert plans["weighted"].plan_hash == plan_hash({"replicas": []})
    assert store.get_plan(ids["iterative"]).plan_hash == plan_hash(make_plan(tp=2))


def test_record_plans_writes_all_or_nothing(store: StateStore) -> None:
    run_id = store.start_run("i", "p", {})
    broken = {"replicas": [{"cloud": "aws", "region": "r"}]}  # no stages
    with pytest.raises(KeyError):
        store.record_plans(run_id, MODEL, {"exact": make_plan(), "weighted": broken})
    assert store.run_plans(run_id) == []


def test_plan_hash_covers_the_placement_only() -> None:
    plan = make_plan(count=2)
    cheaper = make_plan(count=2, tokens_per_s=1200.0) | {"status": "feasible", "solve_s": 3.2}
    split = make_plan(count=1)
    split["replicas"] = split["replicas"] * 2  # the same two replicas, not grouped
    assert plan_hash(plan) == plan_hash(cheaper) == plan_hash(split)
    assert plan_hash(plan) != plan_hash(make_plan(count=1))
    assert plan_hash(plan) != plan_hash(make_plan(tp=2, count=2))


replica_strategy = st.fixed_dictionaries(
    {
        "cloud": st.sampled_from(["aws", "gcp"]),
        "region": st.sampled_from(["r1", "r2"]),
        "count": st.integers(1, 3),
        "stages": st.lists(
            st.fixed_dictionaries(
                {
                    "pool": st.sampled_from(["p1", "p2"]),
                    "gpu": st.just("A100"),
                    "tp": st.sampled_from([1, 2]),
                    "layers": st.integers(1, 4),
                }
            ),
            min_size=1,
            max_size=2,
        ),
    }
)


@settings(max_examples=50, deadline=None)
@given(replicas=st.lists(replica_strategy, max_size=5), seed=st.randoms())
def test_plan_hash_ignores_replica_order_and_grouping(replicas: list[Any], seed: Any) -> None:
    ungrouped = [r | {"count": 1} for r in replicas for _ in range(r["count"])]
    seed.shuffle(ungrouped)
    assert plan_hash({"replicas": replicas}) == plan_hash({"replicas": ungrouped})


# -- publications ---------------------------------------------------------------------------


def test_first_run_publishes_and_a_rerun_posts_nothing(store: StateStore) -> None:
    posts: list[PublishedPlan | None] = []
    first = publish(store, make_plan(), posts.append)
    assert first.posted and posts == [None]

    rerun = publish(store, make_plan(), posts.append)
    assert not rerun.posted and len(posts) == 1
    assert rerun.previous is not None and rerun.previous.publication_id == first.publication_id

    last = store.last_published(MODEL, CHANNEL)
    assert last is not None and last.plan == make_plan() and last.strategy == "exact"
    assert store.pending_publication(MODEL, CHANNEL) is None
    assert store.last_published(MODEL, "slack:#other") is None


def test_a_changed_placement_is_posted_against_the_last_published(store: StateStore) -> None:
    posts: list[PublishedPlan | None] = []
    publish(store, make_plan(), posts.append)
    changed = new_run_with_plan(store, make_plan(count=3), inputs="more demand")
    result = publish_once(store, plan_id=changed, channel=CHANNEL, post=posts.append)
    assert result.posted
    assert posts[1] is not None and posts[1].plan == make_plan()
    last = store.last_published(MODEL, CHANNEL)
    assert last is not None and last.plan_id == changed


def test_failed_post_stays_pending_and_the_next_run_posts_it(store: StateStore) -> None:
    publish(store, make_plan())
    before = store.last_published(MODEL, CHANNEL)

    changed = make_plan(count=2)
    with pytest.raises(ConnectionError):
        publish(store, changed, refused)
    assert store.last_published(MODEL, CHANNEL) == before
    pending = store.pending_publication(MODEL, CHANNEL)
    assert pending is not None and pending.plan_hash == plan_hash(changed)
    assert pending.attempts == 1 and "could not be reached" in (pending.error or "")

    posts: list[PublishedPlan | None] = []
    retry = publish(store, changed, posts.append)
    assert retry.posted and posts == [before]
    assert store.pending_publication(MODEL, CHANNEL) is None
    statuses = [p.status for p in store.recent_publications()]
    assert statuses == ["published", "superseded", "published"]


def test_pending_is_dropped_when_the_placement_returns(store: StateStore) -> None:
    publish(store, make_plan())
    with pytest.raises(ConnectionError):
        publish(store, make_plan(tp=2), refused)
    back = publish(store, make_plan(), lambda _previous: pytest.fail("nothing changed"))
    assert not back.posted
    assert store.pending_publication(MODEL, CHANNEL) is None


def test_two_racing_runs_publish_once(store_factory: StoreFactory) -> None:
    """Two runs with their own connections decide at once: exactly one posts."""
    setup = store_factory()
    plan_ids = [new_run_with_plan(setup, make_plan(), inputs=f"run {i}") for i in range(2)]
    posts: list[int] = []
    results: dict[int, Any] = {}
    barrier = threading.Barrier(2)

    def run(index: int) -> None:
        store = store_factory(create=False)
        barrier.wait()

        def slow_post(_previous: PublishedPlan | None) -> None:
            posts.append(index)
            time.sleep(0.3)  # the other racer is now waiting on the lock

        try:
            results[index] = publish_once(
                store, plan_id=plan_ids[index], channel=CHANNEL, post=slow_post
            )
        except Exception as exc:  # surfaced by the assertions below
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(posts) == 1, results
    winner = posts[0]
    assert results[winner].posted
    assert not results[1 - winner].posted
    assert results[1 - winner].previous.plan_id == plan_ids[winner]
    published = [p for p in setup.recent_publications() if p.status == "published"]
    assert [p.plan_id for p in published] == [plan_ids[winner]]


def test_a_held_lock_makes_a_racer_wait_then_store_busy(store_factory: StoreFactory) -> None:
    holder, racer = store_factory(), store_factory(create=False)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.publish_lock(MODEL, CHANNEL):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        with (
            pytest.raises(StoreBusy, match="publish lock"),
            racer.publish_lock(MODEL, CHANNEL, timeout_s=0.3),
        ):
            pass
        assert 0.25 <= time.monotonic() - started < 5
        assert racer.recent_runs() == []  # reads are not blocked by the lock
    finally:
        release.set()
        thread.join(10)
    with racer.publish_lock(MODEL, CHANNEL, timeout_s=1) as session:
        assert session.last_published() is None


KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from tasks.state import StateStore
    url, schema_name = sys.argv[1], sys.argv[2] or None
    store = StateStore.from_url(url, schema_name=schema_name, create=False)
    plan_id = int(sys.argv[3])
    with store.publish_lock(store.get_plan(plan_id).model, sys.argv[4]) as session:
        session.mark_pending(plan_id)
        print("posting", flush=True)
        time.sleep(60)
    """
)


def test_a_killed_run_leaves_the_published_plan_current(store_factory: StoreFactory) -> None:
    store = store_factory()
    publish(store, make_plan())
    before = store.last_published(MODEL, CHANNEL)
    doomed_plan = new_run_with_plan(store, make_plan(count=5), inputs="doomed")

    url, schema_name = store_factory.url, store_factory.schema_name  # type: ignore[attr-defined]
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, url, schema_name or "", str(doomed_plan), CHANNEL],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "posting"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)

    assert store.last_published(MODEL, CHANNEL) == before
    assert store.pending_publication(MODEL, CHANNEL) is None  # never committed
    with store.publish_lock(MODEL, CHANNEL, timeout_s=5) as session:  # the lock died with it
        assert session.last_published() == before
    assert store.get_run(store.get_plan(doomed_plan).run_id).status == "running"
    posts: list[PublishedPlan | None] = []
    assert publish_once(store, plan_id=doomed_plan, channel=CHANNEL, post=posts.append).posted
    assert posts == [before]


def test_session_rejects_a_plan_of_another_model(store: StateStore) -> None:
    plan_id = new_run_with_plan(store, make_plan())
    with store.publish_lock("other-model", CHANNEL) as session, pytest.raises(ValueError):
        session.mark_pending(plan_id)
    with pytest.raises(RuntimeError, match="released"):
        session.last_published()


# -- prices ---------------------------------------------------------------------------------


def price_table() -> pd.DataFrame:
    fetched = pd.to_datetime(["2025-06-01T00:00:00Z", "2025-06-01T00:05:00Z"]).as_unit("us")
    return pd.DataFrame(
        {
            "source": ["snapshot", "snapshot"],
            "cloud": ["aws", "gcp"],
            "region": ["us-east-1", "us-central1"],
            "zone": ["", "us-central1-a"],
            "instance_type": ["p3.2xlarge", "a2-highgpu-1g"],
            "gpu": ["V100", "A100"],
            "gpus_per_instance": [1, 1],
            "price_per_hour": [3.06, float("nan")],
            "spot_price_per_hour": [0.92, 1.1],
            "fetched_at": fetched,
        }
    )


def test_last_good_prices_round_trip_with_age(store: StateStore) -> None:
    now = datetime(2025, 6, 2, tzinfo=UTC)
    table = price_table()
    digest = store.save_prices(table, now - timedelta(hours=3))
    assert digest == prices_hash(table) == prices_hash(table.iloc[::-1])

    saved = store.last_good_prices(timedelta(hours=24), now=now)
    assert saved is not None
    assert saved.age == timedelta(hours=3) and saved.prices_hash == digest
    pd.testing.assert_frame_equal(saved.table, table, check_dtype=False)
    assert dict(saved.table.dtypes.map(str)) == dict(table.dtypes.map(str))
    assert store.last_good_prices(timedelta(hours=2), now=now) is None


def test_newest_prices_win_and_resaving_refreshes(store: StateStore) -> None:
    now = datetime(2025, 6, 2, tzinfo=UTC)
    old, new = price_table(), price_table().assign(spot_price_per_hour=[0.5, 0.6])
    store.save_prices(old, now - timedelta(hours=5))
    store.save_prices(new, now - timedelta(hours=4))
    latest = store.last_good_prices(timedelta(days=1), now=now)
    assert latest is not None and latest.prices_hash == prices_hash(new)

    store.save_prices(old, now - timedelta(hours=1))  # the same prices, fetched again
    latest = store.last_good_prices(timedelta(days=1), now=now)
    assert latest is not None and latest.prices_hash == prices_hash(old)
    assert latest.age == timedelta(hours=1)
