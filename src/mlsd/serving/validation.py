"""Request validation compiled once from a package's signature.

Each input field gets one small checker function built at start-up, so a request costs a
dictionary walk and a few comparisons per field. A problem names the instance, the field
and what is wrong. Values outside the declared range or domain are rejected or accepted
and flagged, as the spec's ``serving.on_invalid`` says; unknown fields are ignored (and
counted) or rejected, as ``serving.unknown_fields`` says. Standard library only: this runs
on the serving path.
"""

from __future__ import annotations

import math
import operator
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlsd.values import category_key

# a checker returns (value to use, problem or None, flag or None)
Checker = Callable[[Any], tuple[Any, str | None, str | None]]

_NUMBERS = {float, int}  # exactly; bool is a subclass of int but not a number here


def _bound(value: float | None, default: float) -> float:
    return default if value is None else float(value)


MAX_REQUEST_ID = 128
_PRINTABLE = "^[ -~]*$"  # printable ASCII, space to tilde
_PRINTABLE_ID = re.compile(_PRINTABLE)
# a request id in the OpenAPI and V2 documents
REQUEST_ID_SCHEMA = {"type": "string", "maxLength": MAX_REQUEST_ID, "pattern": _PRINTABLE}
MAX_FIELD_NAME = 200


def _shown(name: str) -> str:
    """A client's field name as answers and logs carry it: cut at ``MAX_FIELD_NAME``
    characters, so a request cannot make its rejected rows far larger than itself."""
    return name if len(name) <= MAX_FIELD_NAME else name[:MAX_FIELD_NAME] + "…"


def request_id_problem(given: str) -> str | None:
    """What is wrong with a client's request id, if anything. It is logged, echoed, joined
    to feedback and hashed for routing as given, so it is refused rather than changed: an id
    changed here would never meet the client's feedback."""
    if len(given) > MAX_REQUEST_ID:
        return f"is {len(given)} characters long; at most {MAX_REQUEST_ID} are accepted"
    if not _PRINTABLE_ID.fullmatch(given):
        return "must be printable ASCII (letters, digits, punctuation, spaces)"
    return None


_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


@dataclass
class Validated:
    """The outcome of validating one request."""

    columns: dict[str, list]  # field -> one value per accepted instance
    accepted: list[int]  # indices of instances that passed
    problems: list[dict] = field(default_factory=list)  # {"instance", "field", "problem"}
    flags: list[list[str]] = field(default_factory=list)  # per accepted instance
    unknown: Counter = field(default_factory=Counter)  # unknown field name -> count


def _numeric(spec: dict, on_invalid: str) -> Checker:
    low, high = spec.get("min"), spec.get("max")

    def check(value: Any):
        if value is None:
            return None, None, None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"expected a number, got {type(value).__name__} {value!r:.40}", None
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int beyond float's range
            return None, f"an integer of {value.bit_length()} bits is too large for a number", None
        if not finite:
            return None, f"{value} is not a finite number", None
        if (low is not None and value < low) or (high is not None and value > high):
            text = f"{value!r} is outside the training range [{low}, {high}]"
            return (None, text, None) if on_invalid == "reject" else (value, None, text)
        return value, None, None

    return check


def _categorical(spec: dict, on_invalid: str) -> Checker:
    domain = spec.get("domain")
    known = {category_key(v) for v in domain} if domain is not None else None
    shown = ", ".join(map(str, domain[:10])) + (" …" if domain and len(domain) > 10 else "")

    def check(value: Any):
        if value is None:
            return None, None, None
        if not isinstance(value, str | int | float | bool):
            return None, f"expected a category, got {type(value).__name__}", None
        if isinstance(value, float) and not math.isfinite(value):
            return None, f"{value} is not a valid category", None
        if known is not None and category_key(value) not in known:
            text = f"{value!r} is not a known category (known: {shown})"
            return (None, text, None) if on_invalid == "reject" else (value, None, text)
        return value, None, None

    return check


def _boolean(spec: dict, on_invalid: str) -> Checker:
    def check(value: Any):
        if value is None or isinstance(value, bool):
            return value, None, None
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value), None, None
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()], None, None
        return None, f"expected true or false, got {value!r:.40}", None

    return check


def _datetime(spec: dict, on_invalid: str) -> Checker:
    def check(value: Any):
        if value is None:
            return None, None, None
        if not isinstance(value, str):
            return None, f"expected an ISO 8601 date-time string, got {type(value).__name__}", None
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return None, f"{value!r:.40} is not an ISO 8601 date-time", None
        return value, None, None

    return check


_CHECKERS = {
    "numeric": _numeric,
    "categorical": _categorical,
    "boolean": _boolean,
    "datetime": _datetime,
}


class RequestValidator:
    """Validates the ``instances`` of a request against a signature's inputs."""

    def __init__(
        self,
        signature: dict,
        *,
        on_invalid: str = "reject",
        unknown_fields: str = "ignore",
        max_instances: int = 1000,
    ):
        self.fields = [i["name"] for i in signature["inputs"]]
        self.checkers = {
            i["name"]: _CHECKERS[i["type"]](i, on_invalid) for i in signature["inputs"]
        }
        self.passthrough = set(signature.get("id_columns", []))  # ids: logged, not features
        # Fast path for the numeric fields: one pass proves a whole instance valid; any
        # doubt (a missing or None value, a non-number, NaN, out of range) falls back to the
        # per-field checkers, which say exactly what is wrong.
        numeric = [i for i in signature["inputs"] if i["type"] == "numeric"]
        self._numeric = [i["name"] for i in numeric]
        self._get_numeric = operator.itemgetter(*self._numeric) if len(numeric) > 1 else None
        self._low = [_bound(i.get("min"), -math.inf) for i in numeric]
        self._high = [_bound(i.get("max"), math.inf) for i in numeric]
        self._bounded = all(map(math.isfinite, self._low + self._high))
        self._others = {n: c for n, c in self.checkers.items() if n not in set(self._numeric)}
        self.reject_unknown = unknown_fields == "reject"
        self.max_instances = max_instances

    def _numeric_values(self, instance: dict) -> tuple | None:
        """The instance's numeric values when all are present, finite numbers in range."""
        try:
            values = self._get_numeric(instance)
        except KeyError:
            return None
        # C-level maps over a few dozen Python numbers beat numpy's per-call cost here;
        # NaN fails every comparison, and huge ints compare exactly
        if (
            not set(map(type, values)) <= _NUMBERS
            or not all(map(operator.le, self._low, values))
            or not all(map(operator.le, values, self._high))
        ):
            return None
        if not self._bounded:  # an open bound lets ±inf through the comparisons
            try:
                if not all(map(math.isfinite, values)):
                    return None
            except OverflowError:  # an int beyond float: the checker says so
                return None
        return values

    def validate(self, instances: Any) -> Validated:
        """Check every instance; the accepted ones come back as columns of values."""
        if not isinstance(instances, list):
            return Validated(
                {},
                [],
                [{"instance": None, "field": "instances", "problem": "expected a list of objects"}],
            )
        columns: dict[str, list] = {name: [] for name in self.fields}
        out = Validated(columns, [])
        for index, instance in enumerate(instances):
            if not isinstance(instance, dict):
                out.problems.append(
                    {
                        "instance": index,
                        "field": None,
                        "problem": f"expected an object, got {type(instance).__name__}",
                    }
                )
                continue
            values, flags, bad = {}, [], False
            checkers = self.checkers
            if self._get_numeric is not None:
                fast = self._numeric_values(instance)
                if fast is not None:
                    values.update(zip(self._numeric, fast, strict=True))
                    checkers = self._others
            for name, check in checkers.items():
                if name not in instance:
                    out.problems.append(
                        {"instance": index, "field": name, "problem": "missing required field"}
                    )
                    bad = True
                    continue
                value, problem, flag = check(instance[name])
                if problem:
                    out.problems.append({"instance": index, "field": name, "problem": problem})
                    bad = True
                elif flag:
                    flags.append(f"{name}: {flag}")
                values[name] = value
            # keys beyond the known fields present are rare: only then compute which they are
            unknown = (
                instance.keys() - self.checkers.keys() - self.passthrough
                if len(instance) > len(values)
                else ()
            )
            for name in unknown:
                name = _shown(name)
                out.unknown[name] += 1
                if self.reject_unknown:
                    out.problems.append(
                        {"instance": index, "field": name, "problem": "unknown field"}
                    )
                    bad = True
            if not bad:
                for name in self.fields:
                    columns[name].append(values[name])
                out.accepted.append(index)
                out.flags.append(flags)
        return out
