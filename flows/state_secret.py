"""A state-store password never becomes a flow parameter (Prefect stores parameters and shows
them in its UI): the parameter carries the URL with `***`, the password travels in
`$REPLAN_STATE_PASSWORD`, set by `replan run`/`replan serve` for the processes they start."""

from __future__ import annotations

import os

PASSWORD_ENV = "REPLAN_STATE_PASSWORD"
REDACTED = "***"


def split_state_password(url: str | None) -> tuple[str | None, str | None]:
    """(`url` with its password as `***`, the password), or (`url`, None) without one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not url:
        return url, None
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url, None  # not a URL: the store says so when it opens it
    if not parsed.password or parsed.password == REDACTED:
        return url, None
    return parsed.render_as_string(hide_password=True), str(parsed.password)


def state_url_with_password(url: str | None) -> str | None:
    """The URL to open: a `***` password is filled in from `$REPLAN_STATE_PASSWORD`."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not url or f":{REDACTED}@" not in url:
        return url
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        raise ValueError(
            f"the state URL's password is redacted ({REDACTED}) and ${PASSWORD_ENV} is not "
            f"set; fix: set {PASSWORD_ENV} where the flow runs, or give the whole URL in "
            "REPLAN_STATE_URL"
        )
    return parsed.set(password=password).render_as_string(hide_password=False)


def export_state_password(url: str | None) -> str | None:
    """The parameter to pass for `url`: its password moved to `$REPLAN_STATE_PASSWORD`."""
    redacted, password = split_state_password(url)
    if password is not None:
        os.environ[PASSWORD_ENV] = password
    return redacted
