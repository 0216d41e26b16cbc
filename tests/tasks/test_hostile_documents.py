"""Hostile YAML/JSON documents (scenarios, inventories) and extreme inventory numbers: one line
naming the file and the line or field, exit 2, fast; never a RecursionError or a hang."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.cli import main
from solver import ScenarioError, load_scenario
from solver.documents import MAX_DEPTH, DocumentError, load_json, load_yaml, read_document
from tasks.inventory import NUMBER_BOUNDS, InventoryError, load_inventory

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "scenarios" / "seed.yaml"
SMALL_INVENTORY = ROOT / "tests" / "data" / "inventory" / "small.yaml"

LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- the loader itself -----------------------------------------------------------------------


def test_billion_laughs_is_refused_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(DocumentError, match=r"anchor &a is not allowed") as caught:
        load_yaml(LAUGHS, source="bomb.yaml")
    assert time.monotonic() - started < 1.0
    assert caught.value.line == 1 and str(caught.value).startswith("bomb.yaml: ")
    with pytest.raises(DocumentError, match=r"alias \*h is not allowed"):
        load_yaml(LAUGHS.split("\n")[-1].replace("&i ", ""), source="alias-only.yaml")


@pytest.mark.parametrize(
    ("text", "line"),
    [("a: &x 1\nb: 2\n", 1), ("base: {k: 1}\nx:\n  <<: *base\n", 3), ("- &x [1]\n- 2\n", 1)],
)
def test_anchors_and_aliases_are_refused(text: str, line: int) -> None:
    with pytest.raises(DocumentError, match="not allowed") as caught:
        load_yaml(text, source="d.yaml")
    assert caught.value.line == line


def test_duplicate_yaml_key_names_the_key_and_both_lines() -> None:
    text = "model:\n  name: a\n  num_layers: 32\n  name: b\n"
    with pytest.raises(DocumentError) as caught:
        load_yaml(text, source="s.yaml")
    assert str(caught.value) == "s.yaml: not valid YAML: duplicate key 'name' (lines 2 and 4)"


def test_duplicate_json_key_names_the_key_and_both_lines() -> None:
    text = '{\n "pools": [],\n "model": {"name": "a",\n   "name": "b"}\n}'
    with pytest.raises(DocumentError) as caught:
        load_json(text, source="s.json")
    assert "duplicate key 'name' (lines 3 and 4)" in str(caught.value)
    # the same key in two different objects is fine
    assert load_json('[{"a": 1}, {"a": 2}]', source="ok.json") == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 200_000,  # flow style, unclosed
        "[" * 200_000 + "]" * 200_000,
        "{a: " * 5_000 + "1" + "}" * 5_000,
        "".join(f"{'  ' * i}k:\n" for i in range(MAX_DEPTH + 5)) + "  " * (MAX_DEPTH + 5) + "v\n",
    ],
)
def test_deep_yaml_is_refused_without_recursion(text: str) -> None:
    with pytest.raises(DocumentError, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_yaml(text, source="deep.yaml")


@pytest.mark.parametrize(
    "text",
    ["[" * 200_000 + "]" * 200_000, '{"a": ' * 100_000 + "1" + "}" * 100_000, "[" * 100_000],
)
def test_deep_json_is_refused_without_recursion(text: str) -> None:
    with pytest.raises(DocumentError, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_json(text, source="deep.json")


def test_nesting_at_the_limit_loads() -> None:
    assert load_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, source="j") is not None
    assert load_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH, source="y") is not None
    # brackets inside strings do not count
    assert load_json(json.dumps({"a": "[[[[" * 100}), source="j") == {"a": "[[[[" * 100}


def test_size_limit_is_stated_and_checked_before_reading(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="more than the 100 bytes"):
        load_yaml("a: " + "x" * 200, source="big.yaml", max_bytes=100)
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:  # sparse: nothing is written, nothing must be read
        handle.truncate(64 * 1024 * 1024 + 1)
    started = time.monotonic()
    with pytest.raises(DocumentError, match=r"more than the 67108864 bytes \(64 MiB\)"):
        read_document(big)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("? [a, b]\n: 1\n", "a mapping key must be a plain value"),
        ("a: 1\n---\nb: 2\n", "not valid YAML"),
        ("a: !!python/object:os.system {}\n", "not valid YAML"),
        ("a: [1, 2\n", "not valid YAML"),
        ("k" * 900 + ": 1\n" + "k" * 900 + ": 2\n", "duplicate key"),
    ],
)
def test_other_hostile_yaml_is_one_short_line(text: str, says: str) -> None:
    with pytest.raises(DocumentError, match=says) as caught:
        load_yaml(text, source="h.yaml")
    assert len(str(caught.value)) < 400 and "\n" not in str(caught.value)


def test_integer_past_python_digit_limit_is_a_document_error() -> None:
    with pytest.raises(DocumentError, match="not valid YAML"):
        load_yaml("n: " + "9" * 5000, source="n.yaml")
    with pytest.raises(DocumentError, match="not valid JSON"):
        load_json('{"n": ' + "9" * 5000 + "}", source="n.json")


def test_solver_imports_documents_without_prefect() -> None:
    code = (
        "import sys; sys.modules['prefect'] = None; sys.modules['requests'] = None\n"
        "import solver.documents, solver.scenario; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr


# --- scenarios -------------------------------------------------------------------------------


def test_scenario_alias_bomb_in_model_name(tmp_path: Path) -> None:
    text = SEED.read_text().replace(
        "model:\n  name: 7B-class, fp16, 32 layers",
        LAUGHS + "\nmodel:\n  name: *i",
    )
    path = _write(tmp_path / "bomb.yaml", text)
    started = time.monotonic()
    with pytest.raises(ScenarioError, match=r"bomb\.yaml: YAML anchor &a is not allowed"):
        load_scenario(path)
    assert time.monotonic() - started < 2.0


def test_scenario_duplicate_key_cli_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SEED.read_text().replace("  num_layers: 32\n", "  num_layers: 32\n  num_layers: 16\n")
    path = _write(tmp_path / "dup.yaml", text)
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if "num_layers" in line]
    assert main(["solve", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0] == (
        f"replan solve: {path}: not valid YAML: duplicate key 'num_layers' "
        f"(lines {lines[0]} and {lines[1]})"
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.yaml", "model: " + "[" * 100_000),
        ("deep.json", '{"model": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001),
        ("dup.json", '{"model": {"name": "a"},\n "model": {"name": "b"}}'),
    ],
)
def test_scenario_hostile_cli_exit_2_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str
) -> None:
    path = _write(tmp_path / name, text)
    assert main(["solve", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"replan solve: {path}: "), err
    assert "Traceback" not in err[0] and len(err[0]) < 300


# --- inventories -----------------------------------------------------------------------------


def test_inventory_alias_bomb_in_num_layers(tmp_path: Path) -> None:
    text = SMALL_INVENTORY.read_text()
    path = _write(tmp_path / "bomb.yaml", LAUGHS + "\n" + text)
    with pytest.raises(InventoryError, match=r"line 1: YAML anchor &a is not allowed"):
        load_inventory(path)


def test_inventory_deep_nesting_and_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "deep.yaml", "models: " + "[" * 100_000)
    with pytest.raises(InventoryError, match="nested deeper than 64"):
        load_inventory(path)
    monkeypatch.setattr("tasks.inventory.MAX_DOCUMENT_BYTES", 100)
    with pytest.raises(InventoryError, match="more than the 100 supported"):
        load_inventory(SMALL_INVENTORY)


def _kv_inventory(batch: str) -> str:
    return (
        "models:\n  m:\n    num_layers: 32\n    params_billion: 8\n    bytes_per_param: 2\n"
        f"    kv_cache: {{n_kv_heads: 8, head_dim: 128, bytes_per_value: 2, batch: {batch},"
        " context_tokens: 4096}\n"
        "gpus:\n  T4:\n    memory_gb: 16\n    models:\n      m: {tokens_per_s: 150, source: t}\n"
        "quotas: []\n"
    )


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ("1" + "0" * 400, "must be between 1 and 1,000,000, got 100000000000…(401 characters)"),
        ("1e400", "batch: must be an integer, got '1e400'"),
        ("1.0e+400", "batch: must be an integer, got inf"),
        ("0", "batch: must be between 1 and 1,000,000, got 0"),
        ("9" * 5000, "not valid YAML"),
    ],
)  # fmt: skip
def test_inventory_kv_batch_extremes(tmp_path: Path, batch: str, message: str) -> None:
    path = _write(tmp_path / "kv.yaml", _kv_inventory(batch))
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert message in str(caught.value)
    assert len(str(caught.value)) < 300


def test_inventory_cli_validate_kv_overflow_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "kv.yaml", _kv_inventory("1" + "0" * 400))
    assert main(["validate", "--inventory", str(path)]) == 2
    out = capsys.readouterr().out
    assert "models.m.kv_cache.batch: must be between 1 and 1,000,000" in out


_FIELD_PATHS = {
    "num_layers": ("    num_layers: 32\n", "    num_layers: {}\n"),
    "params_billion": ("    params_billion: 8\n", "    params_billion: {}\n"),
    "bytes_per_param": ("    bytes_per_param: 2\n", "    bytes_per_param: {}\n"),
    "n_kv_heads": ("n_kv_heads: 8,", "n_kv_heads: {},"),
    "head_dim": ("head_dim: 128,", "head_dim: {},"),
    "bytes_per_value": ("bytes_per_value: 2,", "bytes_per_value: {},"),
    "context_tokens": ("context_tokens: 4096}", "context_tokens: {}}}"),
    "memory_gb": ("    memory_gb: 16\n", "    memory_gb: {}\n"),
    "tokens_per_s": ("tokens_per_s: 150,", "tokens_per_s: {},"),
}


@pytest.mark.parametrize("field", sorted(_FIELD_PATHS))
def test_every_inventory_number_is_bounded_with_the_range_named(tmp_path: Path, field: str) -> None:
    bound = NUMBER_BOUNDS[field]
    integer = field in ("num_layers", "n_kv_heads", "head_dim", "context_tokens")
    too_big = str(int(bound.high) * 10) if integer else f"{bound.high * 10:.1f}"
    old, new = _FIELD_PATHS[field]
    text = _kv_inventory("16")
    assert old in text
    path = _write(tmp_path / "inv.yaml", text.replace(old, new.format(too_big)))
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert f"{field}: must be " in message and bound.describe() in message, message


def test_serving_numbers_are_bounded(tmp_path: Path) -> None:
    text = _kv_inventory("16").replace(
        "    num_layers: 32\n", "    num_layers: 32\n    serving: {demand_tokens_per_s: 1.0e+300}\n"
    )
    path = _write(tmp_path / "inv.yaml", text)
    with pytest.raises(
        InventoryError, match=r"demand_tokens_per_s: must be > 0 and <= 1,000,000,000"
    ):
        load_inventory(path)


def test_sane_inventory_still_loads(tmp_path: Path) -> None:
    inventory = load_inventory(_write(tmp_path / "inv.yaml", _kv_inventory("16")))
    assert inventory.models["m"].layer_memory_gb == pytest.approx(
        8 * 2 / 32 + 2 * 8 * 128 * 2 * 16 * 4096 / 1e9
    )
