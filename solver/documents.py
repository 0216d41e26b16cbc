"""One hardened loader for the YAML and JSON documents replan reads (scenarios, inventories,
JSON price bodies).

Both formats get the same rules, checked before or while parsing, so a hostile document fails
fast with one line naming the file and the line:
- at most `MAX_DOCUMENT_BYTES` bytes (checked on the file size before reading);
- at most `MAX_DEPTH` nested mappings/lists (no RecursionError, whatever the input);
- no YAML anchors or aliases (`&a`, `*a`, `<<: *a`): one alias can expand a small file into
  billions of values ("billion laughs"); plain documents never need them;
- no key repeated in one mapping (YAML and JSON keep the last value silently): the error names
  the key and both lines.

Pure: pyyaml and json only, so `solver` stays importable without Prefect.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64
_MAX_SHOWN_KEY_CHARS = 60


class DocumentError(ValueError):
    """A document cannot be loaded: `source: reason (line N)`; `reason` and `line` also apart."""

    def __init__(self, source: str, reason: str, line: int | None = None) -> None:
        self.source = source
        self.reason = reason
        self.line = line
        shows_line = line is None or f"lines {line}" in reason or f"and {line})" in reason
        super().__init__(f"{source}: {reason}" + ("" if shows_line else f" (line {line})"))


def _shown(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= _MAX_SHOWN_KEY_CHARS else text[: _MAX_SHOWN_KEY_CHARS - 1] + "…"


def read_document(path: str | Path, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """Load a `.json` file as JSON and anything else as YAML, with the rules above."""
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DocumentError(source, _too_large(size, max_bytes))
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # a file growing while read is still capped
    except OSError as exc:
        raise DocumentError(source, f"cannot read: {exc.strerror or exc}") from None
    kind = "json" if path.suffix.lower() == ".json" else "yaml"
    return load_document(data, source=source, kind=kind, max_bytes=max_bytes)


def load_document(
    data: str | bytes, *, source: str, kind: str, max_bytes: int = MAX_DOCUMENT_BYTES
) -> Any:
    """Parse `data` as `kind` ("yaml" or "json"); raise DocumentError naming `source`."""
    if kind == "json":
        return load_json(data, source=source, max_bytes=max_bytes)
    if kind == "yaml":
        return load_yaml(data, source=source, max_bytes=max_bytes)
    raise ValueError(f"unknown document kind {kind!r}")


def _too_large(size: int, max_bytes: int) -> str:
    return f"{size} bytes is more than the {max_bytes} bytes ({max_bytes // 2**20} MiB) supported"


def _as_text(data: str | bytes, source: str, max_bytes: int) -> str:
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise DocumentError(source, _too_large(size, max_bytes))
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DocumentError(source, f"not UTF-8: byte 0x{data[exc.start]:02x}", line) from None


# --- YAML ----------------------------------------------------------------------------------


class _HardenedLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases, deep nesting and repeated keys."""

    source = "<document>"

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise DocumentError(
                self.source,
                f"YAML alias *{event.anchor} is not allowed (write the value out)",
                line,
            )
        if getattr(event, "anchor", None) is not None:
            raise DocumentError(
                self.source, f"YAML anchor &{event.anchor} is not allowed (write values out)", line
            )
        if isinstance(event, yaml.CollectionStartEvent):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise DocumentError(
                    self.source, f"nested deeper than {MAX_DEPTH} levels (the limit)", line
                )
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:
                    raise DocumentError(
                        self.source, "a mapping key must be a plain value", line
                    ) from None
                if first is not None:
                    raise DocumentError(
                        self.source,
                        f"not valid YAML: duplicate key {_shown(key)} (lines {first} and {line})",
                        line,
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(data: str | bytes, *, source: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """Parse one YAML document with the rules of this module."""
    text = _as_text(data, source, max_bytes)
    loader = _HardenedLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except DocumentError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = mark.line + 1 if mark is not None else None
        raise DocumentError(source, f"not valid YAML: {problem}", line) from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer past Python's 4,300 digits
        raise DocumentError(source, f"not valid YAML: {str(exc)[:200]}") from None
    finally:
        loader.dispose()


# --- JSON ----------------------------------------------------------------------------------

_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"\s*:?|[\[\]{}]')


def _scan_json(text: str, source: str) -> None:
    """Check nesting depth and repeated keys with line numbers, without recursion."""
    stack: list[dict[str, int] | None] = []
    line = 1
    last = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        start = match.start()
        line += text.count("\n", last, start)
        last = start
        if token in ("{", "["):
            stack.append({} if token == "{" else None)
            if len(stack) > MAX_DEPTH:
                raise DocumentError(
                    source, f"nested deeper than {MAX_DEPTH} levels (the limit)", line
                )
        elif token in ("}", "]"):
            if stack:
                stack.pop()
        elif token.endswith(":") and stack and stack[-1] is not None:
            key = token[:-1].rstrip()
            keys = stack[-1]
            if key in keys:
                try:
                    shown = _shown(json.loads(key))
                except ValueError:
                    shown = key[:_MAX_SHOWN_KEY_CHARS]
                raise DocumentError(
                    source,
                    f"not valid JSON: duplicate key {shown} (lines {keys[key]} and {line})",
                    line,
                )
            keys[key] = line


class _RepeatedKey(ValueError):
    """A key repeated in one JSON object (found while parsing, before its lines are known)."""


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(f"duplicate key {_shown(key)}")
            seen.add(key)
    return result


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_INNERMOST_PAIR = re.compile(r"\{\}|\[\]")


def _may_be_too_deep(text: str) -> bool:
    """False when the JSON surely nests at most MAX_DEPTH levels (C-speed passes only)."""
    brackets = _NOT_BRACKETS.sub("", _JSON_STRING.sub("", text))
    for _ in range(MAX_DEPTH):
        if not brackets:
            return False
        brackets = _INNERMOST_PAIR.sub("", brackets)
    return bool(brackets)


def load_json(data: str | bytes, *, source: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """Parse one JSON document with the rules of this module."""
    text = _as_text(data, source, max_bytes)
    if _may_be_too_deep(text):
        _scan_json(text, source)  # slow, exact: raises naming the line
    try:
        return json.loads(text, object_pairs_hook=_no_repeats)
    except _RepeatedKey as exc:
        _scan_json(text, source)  # finds both lines and raises
        raise DocumentError(source, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise DocumentError(source, f"nested deeper than {MAX_DEPTH} levels (the limit)") from None
    except json.JSONDecodeError as exc:
        raise DocumentError(source, f"not valid JSON: {exc.msg}", exc.lineno) from None
    except ValueError as exc:  # e.g. an integer past Python's 4,300 digits
        raise DocumentError(source, f"not valid JSON: {str(exc)[:200]}") from None
