"""The state store: every run, plan and publication, and the last good prices.

SQLAlchemy Core on a SQLite file by default, PostgreSQL through `REPLAN_STATE_URL`.
`publish_once` is the decide → post → record critical section under the store's lock.
"""

from tasks.state.fleet import (
    FLEET_MODEL,
    market_for_price_mode,
    published_fleet,
    union_plan,
)
from tasks.state.hashing import (
    PlanJson,
    canonical_json,
    canonical_placement,
    plan_hash,
    prices_hash,
    stable_hash,
)
from tasks.state.publish import PublishResult, publish_once
from tasks.state.records import (
    LastGoodPrices,
    PlanRecord,
    PublicationRecord,
    PublishedPlan,
    RunRecord,
    StoreBusy,
)
from tasks.state.store import (
    DEFAULT_STATE_PATH,
    STATE_URL_ENV,
    PublishSession,
    StateStore,
    StateStoreError,
    StateStoreUnavailable,
    StateUrlError,
    default_state_url,
    redact_url,
)

__all__ = [
    "DEFAULT_STATE_PATH",
    "FLEET_MODEL",
    "STATE_URL_ENV",
    "LastGoodPrices",
    "PlanJson",
    "PlanRecord",
    "PublicationRecord",
    "PublishResult",
    "PublishSession",
    "PublishedPlan",
    "RunRecord",
    "StateStore",
    "StateStoreError",
    "StateStoreUnavailable",
    "StateUrlError",
    "StoreBusy",
    "canonical_json",
    "canonical_placement",
    "default_state_url",
    "market_for_price_mode",
    "plan_hash",
    "prices_hash",
    "publish_once",
    "published_fleet",
    "redact_url",
    "stable_hash",
    "union_plan",
]
