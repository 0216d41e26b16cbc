"""Broken state stores: `replan history` and `StateStore.from_url` say one line with the fix,
exit 2 for a URL that can never work and 1 for a store that cannot be used now; no SQLAlchemy
traceback, no password."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flows.cli import main
from tasks.state import StateStore, StateStoreUnavailable, StateUrlError, redact_url

PASSWORD = "s3cretPW"


def _history(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["history", "--state", url])
    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err
    assert "Traceback" not in captured.err and "sqlalche.me" not in captured.err
    return code, captured.err.strip().splitlines()


def _corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.sqlite"
    path.write_bytes(b"this is not SQLite\n" * 300)
    return path


@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        ("not a url", 2, "cannot be parsed; fix: give --state"),
        (f"postgresql+psycopg://postgres:{PASSWORD}@[::1/test", 2, "cannot be parsed"),
        (f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:notaport/t", 2, "cannot be parsed"),
        ("foo://x/y", 2, "scheme 'foo' is not supported"),
        (f"mysql://u:{PASSWORD}@127.0.0.1/db", 2, "scheme 'mysql' is not supported"),
        (f"postgresql+nodriver://u:{PASSWORD}@127.0.0.1/db", 2, "driver 'postgresql+nodriver'"),
        (f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/test", 1, "Connection refused"),
        ("sqlite:////proc/replan-state.sqlite", 1, "cannot open or create the state store"),
        ("sqlite:////proc/replan-missing/state.sqlite", 1, "cannot create the folder"),
    ],
)
def test_history_on_a_broken_store_is_one_line(
    capsys: pytest.CaptureFixture[str], url: str, code: int, says: str
) -> None:
    exit_code, err = _history(url, capsys)
    assert exit_code == code
    assert len(err) == 1 and err[0].startswith("replan history: ") and says in err[0], err
    assert "fix:" in err[0]


def test_history_on_a_corrupt_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _corrupt(tmp_path)
    before = path.read_bytes()
    exit_code, err = _history(f"sqlite:///{path}", capsys)
    assert exit_code == 1
    assert err == [
        f"replan history: the state store {path} is not a readable SQLite database (file is not "
        "a database); fix: move the file aside (a new store is created on the next run) or "
        "restore a backup"
    ]
    assert path.read_bytes() == before  # left alone for the operator


def test_history_on_a_file_where_the_folder_should_be(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file, not a folder")
    exit_code, err = _history(f"sqlite:///{blocker}/replan.sqlite", capsys)
    assert exit_code == 1 and "cannot create the folder" in err[0]


def test_history_on_a_folder_given_as_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code, err = _history(f"sqlite:///{tmp_path}", capsys)
    assert exit_code == 1 and "cannot open or create the state store" in err[0]


def test_read_only_store_can_be_read_but_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "replan.sqlite"
    StateStore.from_url(f"sqlite:///{path}").dispose()
    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    assert main(["history", "--state", url]) == 0  # history only reads
    capsys.readouterr()
    store = StateStore.from_url(url)
    with pytest.raises(StateStoreUnavailable) as caught:
        store.start_run("inputs", "prices", {"state_url": "x"})
    assert "is read-only" in str(caught.value) and "fix: make the file" in str(caught.value)


def test_history_on_a_sqlite_file_with_a_truncated_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "half.sqlite"
    StateStore.from_url(f"sqlite:///{path}").dispose()
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\x00" * 50 + data[150:])
    exit_code, err = _history(f"sqlite:///{path}", capsys)
    assert exit_code == 1 and len(err) == 1 and "fix:" in err[0]


def test_history_on_a_healthy_store_still_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "--state", f"sqlite:///{tmp_path / 's.sqlite'}"]) == 0
    assert "runs (sqlite:///" in capsys.readouterr().out
    assert main(["history", "--state", f"sqlite:///{tmp_path / 's.sqlite'}", "--limit", "0"]) == 2


def test_from_url_raises_typed_errors_without_password(tmp_path: Path) -> None:
    with pytest.raises(StateUrlError) as bad:
        StateStore.from_url(f"postgresql+psycopg://u:{PASSWORD}@[::1/x")
    assert bad.value.exit_code == 2 and PASSWORD not in str(bad.value)
    with pytest.raises(StateStoreUnavailable) as down:
        StateStore.from_url(f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/x")
    assert down.value.exit_code == 1 and PASSWORD not in str(down.value)
    assert down.value.__cause__ is None and down.value.__suppress_context__
    with pytest.raises(StateStoreUnavailable):
        StateStore.from_url(f"sqlite:///{_corrupt(tmp_path)}")


def test_corruption_after_open_is_reported_by_reads(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = StateStore.from_url(f"sqlite:///{path}")
    store.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE runs")
    with pytest.raises(StateStoreUnavailable, match="failed: no such table: runs"):
        store.recent_runs(5)
    store.dispose()
    for side_file in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        side_file.unlink(missing_ok=True)
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(StateStoreUnavailable, match="not a readable SQLite database"):
        store.recent_runs(5)


def test_redact_url_handles_unparsable_urls() -> None:
    assert PASSWORD not in redact_url(f"postgresql://u:{PASSWORD}@[::1/x")
    assert redact_url(f"postgresql://u:{PASSWORD}@h/x") == "postgresql://u:***@h/x"
