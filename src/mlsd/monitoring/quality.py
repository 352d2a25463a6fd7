"""Data quality at serving, per monitoring window.

What the model is sent is compared with what it was trained on (the package's reference
profile and signature): the missing rate of each field against its training rate, numbers
outside the training range, categories never seen in training, requests the server refused
in validation (the log's ``rejects`` stream) and non-finite model outputs (logged as null).
Each check that crosses its threshold (``monitoring.quality``) becomes a problem with the
figures behind it; the caller turns problems into alerts.

A threshold alone false-alarms on small training sets: a new row drawn from the training
distribution falls outside the range of ``n`` training values with probability 2/(n+1)
(1.6% for 120 rows, above the default 1% threshold), and shows a category seen once in
training about as often as such categories were seen (Good-Turing). So the missing-rate,
out-of-range and unseen-category checks alert only when the share crosses its threshold
AND is more than training data would give by chance, p < :data:`CHANCE_ALPHA`: for the
range, the exact distribution-free chance that ``k`` of ``m`` exchangeable new values fall
outside the range of ``n`` old ones; for missing values and categories, a one-sided
binomial test against the training rate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from mlsd.data.profile import OTHER
from mlsd.spec import QualitySpec
from mlsd.values import category_key

EXAMPLES = 5  # unseen categories shown per column
CHANCE_ALPHA = 0.001  # per column and window: with dozens of columns, rare false alarms


def binomial_p_value(count: int, n: int, expected_rate: float) -> float:
    """P-value of seeing ``count`` or more of ``n`` when each happens with
    ``expected_rate`` (one-sided binomial)."""
    from scipy.stats import binom

    if count <= 0:
        return 1.0
    return float(binom.sf(count - 1, n, min(max(expected_rate, 0.0), 1.0)))


def outside_range_p_value(k: int, m: int, n: int) -> float:
    """Chance that ``k`` or more of ``m`` new values fall outside the range of ``n`` old
    ones when all ``n + m`` are exchangeable (drawn alike; no ties).

    In a random order of the ``n + m`` values, ``j`` new ones outside the range means ``a``
    new values first and ``j - a`` last, the middle starting and ending with an old one:
    ``P(j) = (j + 1) C(n + m - j - 2, n - 2) / C(n + m, n)``.
    """
    from scipy.special import gammaln

    if k <= 0:
        return 1.0
    if n < 2 or k > m:
        return 1.0 if n < 2 else 0.0
    j = np.arange(k, m + 1, dtype=np.float64)

    def log_choose(a, b):
        return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

    logs = np.log(j + 1) + log_choose(n + m - j - 2, n - 2) - log_choose(n + m, n)
    return float(min(1.0, np.exp(logs).sum()))


def _unseen_rate(profile_col: Mapping[str, Any]) -> float:
    """How often training-like data shows a category training never saw: the share of
    training values whose category was seen once (Good-Turing), at least 1/(count+1)."""
    count = int(profile_col.get("count") or 0)
    counts = profile_col.get("counts") or {}
    singletons = sum(1 for k, c in counts.items() if k != OTHER and c == 1)
    return max(singletons, 1) / (count + 1)


def _as_float(values: Any) -> np.ndarray:
    """Numbers as float64 with NaN for missing (None) and for anything unreadable.

    Decimals are numbers: DuckDB reads integers of both signs as HUGEINT, which Arrow and
    Python hold as decimals."""
    if hasattr(values, "to_numpy") and hasattr(values, "type"):  # a pyarrow array
        import pyarrow as pa
        import pyarrow.compute as pc

        kind = values.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        values = values.to_pylist()
    array = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if array.dtype.kind in "fiub":
        return array.astype(np.float64)
    out = np.full(len(array), np.nan)
    for i, v in enumerate(array):
        if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
            with contextlib.suppress(ValueError, OverflowError):  # sNaN, an int beyond float
                out[i] = float(v)
    return out


def _as_list(values: Any) -> list:
    if hasattr(values, "to_pylist"):
        return values.to_pylist()
    return list(values)


def _known_categories(name: str, profile_col: dict, signature: Mapping[str, dict]) -> set | None:
    """Categories seen in training: the signature's domain, else the profile's counts when
    they list every category (no ``__other__``); None when the domain is not known."""
    domain = signature.get(name, {}).get("domain")
    if domain is not None:
        return {category_key(v) for v in domain}
    counts = profile_col.get("counts") or {}
    if counts and not counts.get(OTHER):
        return {k for k in counts if k != OTHER}
    return None


def _categories(values: Any) -> tuple[dict[str, int], int]:
    """Counts per category key and the number of missing values, from the distinct values
    (Arrow's value_counts), so a million rows cost a few distinct keys, not a Python loop."""
    from mlsd.monitoring.drift import category_counts

    return category_counts(values)


def check(
    current: Mapping[str, Any],
    n: int,
    *,
    profile: Mapping[str, Any],
    signature: Mapping[str, Any],
    spec: QualitySpec,
    outputs: Sequence[float] | np.ndarray | None = None,
    rejects: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Quality figures of one window of ``n`` served instances.

    ``current`` maps a field to its values in the window (numpy, pyarrow or a list; a field
    absent from ``current`` was never sent, so it counts as missing). ``profile`` is the
    package's reference profile, ``signature`` its signature, ``outputs`` the model's numeric
    outputs (null/NaN = non-finite), ``rejects`` the window's rows of the log's ``rejects``
    stream. Returns ``{n, columns, rejected, outputs, problems}``; each problem is
    ``{check, column, value, threshold, message, evidence}``.
    """
    fields = {i["name"]: i for i in signature.get("inputs", [])}
    columns: dict[str, dict[str, Any]] = {}
    problems: list[dict[str, Any]] = []
    for name, ref in profile.get("columns", {}).items():
        kind = ref.get("type")
        if kind not in ("numeric", "categorical", "boolean"):
            continue
        values = current.get(name)
        counts: dict[str, int] = {}
        if values is None:
            n_missing = n
        elif kind == "numeric":
            n_missing = int(np.isnan(_as_float(values)).sum())
        else:
            counts, n_missing = _categories(values)
        rate = n_missing / n if n else 0.0
        ref_rate = float(ref.get("missing_rate") or 0.0)
        col: dict[str, Any] = {
            "type": kind,
            "missing_rate": rate,
            "reference_missing_rate": ref_rate,
            "missing_increase": rate - ref_rate,
        }
        p_missing = binomial_p_value(n_missing, n, ref_rate)
        if n and rate - ref_rate > spec.missing_increase and p_missing < CHANCE_ALPHA:
            problems.append(
                {
                    "check": "missing_rate",
                    "column": name,
                    "value": rate - ref_rate,
                    "threshold": spec.missing_increase,
                    "message": f"{name} is missing in {rate:.1%} of rows against "
                    f"{ref_rate:.1%} in training",
                    "evidence": {
                        "missing_rate": rate,
                        "reference_missing_rate": ref_rate,
                        "n": n,
                        "p_value": p_missing,
                    },
                }
            )
        if values is not None and kind == "numeric" and ref.get("min") is not None:
            numbers = _as_float(values)
            low, high = float(ref["min"]), float(ref["max"])
            present = numbers[~np.isnan(numbers)]
            outside = int(((present < low) | (present > high)).sum())
            share = outside / len(present) if len(present) else 0.0
            col.update(
                out_of_range=outside,
                out_of_range_rate=share,
                training_range=[low, high],
                min=float(present.min()) if len(present) else None,
                max=float(present.max()) if len(present) else None,
            )
            n_ref = int(ref.get("count") or 0)
            expected = 2 / (n_ref + 1)
            p_value = outside_range_p_value(outside, len(present), n_ref)
            if share > spec.out_of_range and p_value < CHANCE_ALPHA:
                problems.append(
                    {
                        "check": "out_of_range",
                        "column": name,
                        "value": share,
                        "threshold": spec.out_of_range,
                        "message": f"{share:.1%} of {name} values lie outside the training "
                        f"range [{low:.4g}, {high:.4g}] (seen {col['min']:.4g} to "
                        f"{col['max']:.4g})",
                        "evidence": {
                            "out_of_range": outside,
                            "n_present": len(present),
                            "training_range": [low, high],
                            "min": col["min"],
                            "max": col["max"],
                            "expected_rate": expected,
                            "p_value": p_value,
                        },
                    }
                )
        if values is not None and kind == "categorical":
            known = _known_categories(name, ref, fields)
            if known is not None:
                present = sum(counts.values())
                new = {k: c for k, c in counts.items() if k not in known}
                unseen = sum(new.values())
                share = unseen / present if present else 0.0
                examples = sorted(new, key=lambda k: (-new[k], k))[:EXAMPLES]
                col.update(unseen=unseen, unseen_rate=share, unseen_examples=examples)
                expected = _unseen_rate(ref)
                p_value = binomial_p_value(unseen, present, expected)
                if share > spec.unseen and p_value < CHANCE_ALPHA:
                    problems.append(
                        {
                            "check": "unseen_category",
                            "column": name,
                            "value": share,
                            "threshold": spec.unseen,
                            "message": f"{share:.1%} of {name} values are categories never "
                            f"seen in training (e.g. {', '.join(map(repr, examples))})",
                            "evidence": {
                                "unseen": unseen,
                                "n_present": present,
                                "examples": examples,
                                "expected_rate": expected,
                                "p_value": p_value,
                            },
                        }
                    )
        columns[name] = col

    rejected = _rejected(rejects, n)
    if rejected["rate"] > spec.rejected:
        top = ", ".join(f"{f} ({c})" for f, c in list(rejected["by_field"].items())[:5])
        problems.append(
            {
                "check": "rejected",
                "column": None,
                "value": rejected["rate"],
                "threshold": spec.rejected,
                "message": f"the server refused {rejected['instances']:,} of "
                f"{rejected['instances'] + n:,} instances ({rejected['rate']:.1%}) in "
                f"validation; by field: {top}",
                "evidence": rejected,
            }
        )

    out: dict[str, Any] = {"non_finite": 0, "rate": 0.0}
    if outputs is not None:
        numbers = _as_float(outputs)
        bad = int((~np.isfinite(numbers)).sum())
        out = {"non_finite": bad, "rate": bad / len(numbers) if len(numbers) else 0.0}
        if bad:
            problems.append(
                {
                    "check": "non_finite_output",
                    "column": None,
                    "value": bad,
                    "threshold": 0,
                    "message": f"the model answered NaN or infinity for {bad:,} of "
                    f"{len(numbers):,} instances (numerical instability)",
                    "evidence": {**out, "n": len(numbers)},
                }
            )
    return {"n": n, "columns": columns, "rejected": rejected, "outputs": out, "problems": problems}


def _rejected(rejects: Sequence[Mapping[str, Any]], n_served: int) -> dict[str, Any]:
    """Refused requests and instances, and validation problems counted by field."""
    requests: dict[str, int] = {}
    by_field: dict[str, int] = {}
    for row in rejects:
        requests[str(row.get("request_id"))] = int(row.get("instances") or 0)
        field = row.get("field")
        field = "(request)" if field is None else str(field)
        by_field[field] = by_field.get(field, 0) + 1
    instances = sum(requests.values())
    total = instances + n_served
    return {
        "requests": len(requests),
        "instances": instances,
        "rate": instances / total if total else 0.0,
        "by_field": dict(sorted(by_field.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
