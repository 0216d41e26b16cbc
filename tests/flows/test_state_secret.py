"""A state-store password leaves the flow parameter for `$REPLAN_STATE_PASSWORD` and back."""

from __future__ import annotations

import os

import pytest
from sqlalchemy.engine import make_url

from flows.state_secret import (
    PASSWORD_ENV,
    export_state_password,
    split_state_password,
    state_url_with_password,
)

URL = "postgresql+psycopg://replan:p%40ss:w0rd@db.internal:5432/replan"


def test_the_password_is_split_off_and_filled_back_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    redacted = export_state_password(URL)
    assert redacted == "postgresql+psycopg://replan:***@db.internal:5432/replan"
    assert os.environ[PASSWORD_ENV] == "p@ss:w0rd"
    filled = make_url(state_url_with_password(redacted) or "")
    assert filled == make_url(URL) and filled.password == "p@ss:w0rd"


@pytest.mark.parametrize(
    "url", [None, "", "sqlite:///state/replan.sqlite", "postgresql://replan@db/replan", "not a url"]
)
def test_urls_without_a_password_pass_unchanged(url: str | None) -> None:
    assert split_state_password(url) == (url, None)
    assert state_url_with_password(url) == url


def test_a_redacted_url_without_the_password_says_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ValueError, match=f"fix: set {PASSWORD_ENV} where the flow runs"):
        state_url_with_password("postgresql://replan:***@db/replan")
