"""`replan run` and `replan serve` refuse bad arguments and missing files at once (exit 2, one
line naming the argument and the valid choices), before Prefect or the flow starts.

No Prefect API is running for these tests: a check that came after the flow started would
show as a Prefect start-up, a traceback or a slow test, not as the one line asserted here.
"""

from __future__ import annotations

import io
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from flows.cli import main
from tasks.prices import SOURCE_NAMES
from tests.flows.conftest import INVENTORY, MODEL

AT_ONCE_S = 10.0  # imports included, on a busy machine; the flow took minutes


def refused(*arguments: str) -> str:
    """Run `replan <arguments>`; assert exit 2 at once with one line on stderr; return it."""
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(arguments))
    elapsed_s = time.monotonic() - started
    lines = err.getvalue().splitlines()
    assert code == 2, err.getvalue()
    assert out.getvalue() == ""
    assert len(lines) == 1, err.getvalue()
    assert elapsed_s < AT_ONCE_S
    assert "Traceback" not in lines[0]
    return lines[0]


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.csv"
    path.write_text("not read: the checks fail first\n")
    return path


@pytest.mark.parametrize("command", ["run", "serve"])
def test_an_unknown_model_lists_the_models_of_the_inventory(command: str) -> None:
    line = refused(command, "--inventory", str(INVENTORY), "--model", "llama-9000")
    assert line.startswith(f"replan {command}: --model llama-9000: not in the inventory")
    assert line.endswith(f"its models: {MODEL}")


@pytest.mark.parametrize("command", ["run", "serve"])
def test_an_unknown_source_lists_the_sources(command: str) -> None:
    line = refused(command, "--inventory", str(INVENTORY), "--source", "snapshto")
    assert f"--source snapshto: unknown price source; choose from {', '.join(SOURCE_NAMES)}" in line
    assert "0:00" not in line


def test_a_missing_inventory_is_named_once(tmp_path: Path) -> None:
    missing = tmp_path / "inventry.yaml"
    line = refused("run", "--inventory", str(missing))
    assert line.count(str(missing)) == 1
    assert "cannot read" in line


def test_a_missing_price_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "prices.csv"
    line = refused("run", "--inventory", str(INVENTORY), "--source", "file", "--from", str(missing))
    assert line == (
        f"replan run: --from {missing}: no such price file (the file source reads a price CSV)"
    )


def test_a_source_given_a_location_it_cannot_take_is_named(prices: Path) -> None:
    line = refused("run", "--inventory", str(INVENTORY), "--from", str(prices))
    assert line == "replan run: --source snapshot: the bundled snapshot takes no --from"
