"""Reading system.yaml: YAML with the line of every key, and errors that say where.

Every pydantic error and cross-section finding becomes a SpecError line naming the file, the
line and the key path, with a did-you-mean for misspelt keys and values.
"""

from __future__ import annotations

import datetime
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError

from mlsd.errors import SpecError
from mlsd.spec.checks import _consistency
from mlsd.spec.system import SystemSpec

Location = tuple[int, int]  # (line of the key, line of the value), 1-based


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of keeping the last silently."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # a tag that cannot read its value (`2020-13-45`, `!!int x`, `!!bool x`) raises a
        # plain ValueError, KeyError...: make it a YAML error that carries the line
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as exc:
            value = f" {node.value!r}" if isinstance(node, yaml.ScalarNode) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read{value} as {node.tag}: {exc}", node.start_mark
            ) from exc


# A system.yaml is a few hundred values a few levels deep. The limits stop an alias that
# refers to itself, or aliases of aliases ("billion laughs"), before they hang the walk.
_MAX_DEPTH = 50
_MAX_VALUES = 100_000


def _key(node: yaml.Node) -> Any:
    """The value of a mapping key as the loaded data holds it (`1:` is the int 1)."""
    if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:str":
        return node.value
    try:
        key = _UniqueKeyLoader("").construct_object(node)
        hash(key)
    except (yaml.YAMLError, TypeError):  # `2020-13-45:`, `!!set :`: yaml.load reports it
        return node.value
    return key


def _index_lines(
    node: yaml.Node, path: tuple = (), out: dict | None = None, count: list | None = None
) -> dict:
    """Map every key path in a composed YAML document to the lines of its key and value."""
    out = {} if out is None else out
    count = [0] if count is None else count
    count[0] += 1
    if len(path) > _MAX_DEPTH or count[0] > _MAX_VALUES:
        # an alias's node carries the anchor's line: name the line of the top-level key
        line = out[path[:1]][0] if path[:1] in out else node.start_mark.line + 1
        raise _TooLarge(path, line, len(path) > _MAX_DEPTH)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as a key: yaml.load reports it as unhashable
            key = _key(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey((*path, key), line, seen[key])
            seen[key] = line
            out[(*path, key)] = (line, value_node.start_mark.line + 1)
            _index_lines(value_node, (*path, key), out, count)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            line = item.start_mark.line + 1
            out[(*path, i)] = (line, line)
            _index_lines(item, (*path, i), out, count)
    return out


class _DuplicateKey(Exception):
    def __init__(self, path: tuple, line: int, first: int):
        self.path, self.line, self.first = path, line, first


class _TooLarge(Exception):
    def __init__(self, path: tuple, line: int | None, deep: bool):
        self.path, self.line, self.deep = path, line, deep


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Union/Annotated down to the model or container that carries keys."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [_unwrap(a) for a in typing.get_args(annotation) if a is not type(None)]
        for arg in args:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
        return args[0] if args else annotation
    return annotation


def _model_at(path: tuple) -> Any:
    """The pydantic model (or container annotation) found at a key path of SystemSpec."""
    current: Any = SystemSpec
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
    return _unwrap(current)


def _description(loc: tuple) -> str | None:
    """The description of the field at ``loc``, used as the hint of a type or range error."""
    parent = _model_at(loc[:-1]) if loc else None
    if (
        isinstance(parent, type)
        and issubclass(parent, BaseModel)
        and loc[-1] in parent.model_fields
    ):
        return parent.model_fields[loc[-1]].description
    return None


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _dotted(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _locate(lines: dict, path: tuple) -> int | None:
    """Line of the deepest part of ``path`` present in the file."""
    for depth in range(len(path), 0, -1):
        if path[:depth] in lines:
            key_line, value_line = lines[path[:depth]]
            return value_line if depth == len(path) else key_line
    return None


def _describe(error: dict, lines: dict) -> dict:
    """Turn one pydantic error into {line, key, problem, hint}."""
    # pydantic adds the tags of function validators ('function-after[...]') to locations;
    # a key of the file may hold '[' too (`"a[1]": x`), and stays
    loc: tuple = ()
    for part in error["loc"]:
        if not (isinstance(part, str) and "[" in part and (*loc, part) not in lines):
            loc = (*loc, part)
    kind, given = error["type"], error.get("input")
    hint = None
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        allowed = list(model.model_fields) if is_model else []
        guess = _did_you_mean(loc[-1], allowed)
        problem = f"unknown key '{loc[-1]}'"
        if guess:
            problem += f" — did you mean '{guess}'?"
            hint = f"rename '{loc[-1]}' to '{guess}'"
        else:
            hint = f"remove it; allowed keys here: {', '.join(allowed)}"
    elif kind == "missing":
        desc = _description(loc)
        problem = f"required key '{loc[-1]}' is missing"
        hint = f"add `{loc[-1]}:` under {_dotted(loc[:-1])}" + (f" ({desc})" if desc else "")
    elif kind == "invalid_key":  # `1:`, `~:`, `2020-01-01:` load as a number, null, date
        # pydantic names such a key by its repr: find the key itself for its line
        same = [p for p in lines if p[:-1] == loc[:-1] and len(p) == len(loc)]
        loc = next((p for p in same if type(p[-1]) is type(given) and p[-1] == given), loc)
        reads_as = {type(None): "null", bool: "a boolean", int: "a number", float: "a number"}
        as_what = reads_as.get(
            type(given), "a date" if isinstance(given, datetime.date) else type(given).__name__
        )
        problem = f"YAML reads key {given!r} as {as_what}, not a name"
        hint = "write the key as a name; quote it if it must look like one ('1': ...)"
        return {
            "line": _locate(lines, loc),
            "key": _dotted((*loc[:-1], str(given))),
            "problem": problem,
            "hint": hint,
        }
    elif kind == "literal_error":
        expected = re.findall(r"'([^']*)'", error["ctx"]["expected"]) if "ctx" in error else []
        guess = _did_you_mean(str(given), expected)
        problem = f"{given!r} is not allowed"
        if guess:
            problem += f" — did you mean '{guess}'?"
        hint = "use one of: " + ", ".join(expected)
    else:
        message = error["msg"].removeprefix("Value error, ")
        problem = f"{message} (given: {given!r})" if not isinstance(given, dict | list) else message
        hint = _description(loc)
    # an unknown key is on its own line; _locate gives the line of a value (`key:\n  - 1`)
    line = lines[loc][0] if kind == "extra_forbidden" and loc in lines else _locate(lines, loc)
    return {"line": line, "key": _dotted(loc), "problem": problem, "hint": hint}


def _raise(file: str, problems: list[dict]) -> typing.NoReturn:
    problems.sort(key=lambda p: p["line"] or 0)
    for p in problems:
        p["file"] = file
    text = "\n".join(
        f"{p['file']}:{p['line'] or '?'}: {p['key']}: {p['problem']}"
        + (f"\n    fix: {p['hint']}" if p.get("hint") else "")
        for p in problems
    )
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    raise SpecError(f"{file} has {count}\n{text}", problems=problems)


def _too_large(big: _TooLarge) -> dict:
    if big.deep:
        problem = f"values nested more than {_MAX_DEPTH} levels deep (or an alias inside itself)"
    else:
        problem = f"anchors and aliases expand to more than {_MAX_VALUES:,} values"
    return {
        "line": big.line,
        "key": _dotted(big.path[:3]) if big.path else "(yaml)",
        "problem": problem,
        "hint": "write the values out: a system.yaml needs no deep nesting or repeated aliases",
    }


def parse_spec(text: str, file: str = "system.yaml") -> SystemSpec:
    """Validate YAML text as a SystemSpec; every problem cites ``file``, line and key."""
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        lines = _index_lines(node) if node is not None else {}
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except RecursionError:  # the parser itself recurses once per level of [[[...]]]
        _raise(file, [_too_large(_TooLarge((), None, deep=True))])
    except _TooLarge as big:
        _raise(file, [_too_large(big)])
    except _DuplicateKey as dup:
        _raise(
            file,
            [
                {
                    "line": dup.line,
                    "key": _dotted(dup.path),
                    "problem": f"key appears twice (first on line {dup.first})",
                    "hint": "keep one of them",
                }
            ],
        )
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        _raise(
            file,
            [
                {
                    "line": mark.line + 1 if mark else None,
                    "key": "(yaml)",
                    "problem": f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
                    "hint": "check indentation, colons and quotes around this line",
                }
            ],
        )
    if not isinstance(data, dict):
        _raise(
            file,
            [
                {
                    "line": 1,
                    "key": "(top level)",
                    "problem": "the file must be a mapping of sections",
                    "hint": "start from `mlsd init DATA --target COLUMN`",
                }
            ],
        )
    try:
        spec = SystemSpec.model_validate(data)
    except ValidationError as exc:
        _raise(file, [_describe(e, lines) for e in exc.errors()])
    problems = [
        {"line": _locate(lines, path), "key": _dotted(path), "problem": problem, "hint": hint}
        for path, problem, hint in _consistency(spec)
    ]
    if problems:
        _raise(file, problems)
    return spec


def load_spec(path: str | Path = "system.yaml") -> SystemSpec:
    """Read and validate a ``system.yaml``. Raises SpecError naming file, line and key."""
    path = Path(path)
    if path.is_dir():
        path = path / "system.yaml"
    if not path.exists():
        raise SpecError(
            f"{path} does not exist",
            hint="pass -c PATH, or create one with `mlsd init DATA --target COLUMN`",
        )
    try:
        # utf-8-sig: a byte-order mark some editors write is not part of the YAML
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _raise(
            str(path),
            [
                {
                    "line": exc.object[: exc.start].count(b"\n") + 1,
                    "key": "(yaml)",
                    "problem": f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                    f"{exc.start})",
                    "hint": "save the file as UTF-8",
                }
            ],
        )
    except OSError as exc:
        raise SpecError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    spec = parse_spec(text, file=str(path))
    spec._path = path.resolve()
    return spec
