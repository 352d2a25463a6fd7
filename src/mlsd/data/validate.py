"""Data validation: every anomaly a model builder should hear about before training.

Each check returns :class:`Anomaly` records with a severity (``error`` blocks training,
``warning`` does not), the column, the evidence and a suggested fix. A finding the spec
acknowledges (``data.checks.acknowledge``) is still reported but never blocks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlsd.columns import select_features
from mlsd.data import leakage, ranking
from mlsd.data.profile import profile, psi, psi_categorical, psi_numeric
from mlsd.data.snapshot import Dataset, load_dataset, split_dataset
from mlsd.data.split import TEST, TRAIN
from mlsd.data.target import classes_of, encode_target, positive_class
from mlsd.errors import FeatureError, did_you_mean
from mlsd.spec import SystemSpec
from mlsd.stages import Stages
from mlsd.tasks import get_task
from mlsd.workspace import Workspace, write_json

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass
class Anomaly:
    """One finding: which check, how bad, where, the evidence, and how to fix it."""

    check: str
    severity: str
    column: str | None
    message: str
    fix: str
    evidence: dict[str, Any] = field(default_factory=dict)
    acknowledged: bool = False

    @property
    def blocking(self) -> bool:
        """True when this finding stops training."""
        return self.severity == ERROR and not self.acknowledged


@dataclass
class ValidationReport:
    """Everything ``mlsd validate`` found, plus the facts it is based on."""

    system: str
    snapshot: str
    n_rows: int
    n_columns: int
    column_types: dict[str, str]
    features: list[str]
    split: dict
    anomalies: list[Anomaly]
    timings: dict[str, float]
    peak_memory_mb: dict[str, float]
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    groups: dict | None = None  # grouped tasks (ranking): see check_groups

    @property
    def passed(self) -> bool:
        """No blocking anomaly."""
        return not any(a.blocking for a in self.anomalies)

    def counts(self) -> dict[str, int]:
        """Number of findings per severity (acknowledged ones counted apart)."""
        out = {ERROR: 0, WARNING: 0, INFO: 0, "acknowledged": 0}
        for a in self.anomalies:
            out["acknowledged" if a.acknowledged else a.severity] += 1
        return out

    def to_dict(self) -> dict:
        """JSON form of the report (stable keys)."""
        return {
            "system": self.system,
            "snapshot": self.snapshot,
            "created_at": self.created_at,
            "passed": self.passed,
            "counts": self.counts(),
            "n_rows": self.n_rows,
            "n_columns": self.n_columns,
            "column_types": self.column_types,
            "features": self.features,
            "split": self.split,
            "groups": self.groups,
            "timings": self.timings,
            "peak_memory_mb": self.peak_memory_mb,
            "anomalies": [{**asdict(a), "blocking": a.blocking} for a in self.anomalies],
        }


def _round(value: float, digits: int = 4) -> float:
    return float(round(float(value), digits))


# --- checks -----------------------------------------------------------------------------------


def check_spec_columns(spec: SystemSpec, columns: list[str]) -> list[Anomaly]:
    """Every column the spec names must exist in the data."""
    named = {
        "problem.target": [spec.problem.target],
        "problem.time": spec.problem.time,
        "problem.id": [spec.problem.id] if spec.problem.id else [],
        "problem.group": [spec.problem.group] if spec.problem.group else [],
        "data.split.group": [spec.data.split.group] if spec.data.split.group else [],
        "data.columns": list(spec.data.columns),
        "features.exclude": spec.features.exclude,
        "features.include": spec.features.include or [],
        "features.columns": list(spec.features.columns),
        "features.crosses": [c for g in spec.features.crosses for c in g],
    }
    found = []
    for key, names in named.items():
        for name in names:
            if name not in columns:
                found.append(
                    Anomaly(
                        "missing_column",
                        ERROR,
                        name,
                        f"{key} names column '{name}', which the data does not have"
                        + did_you_mean(name, columns),
                        f"fix {key} in system.yaml; the data has: {', '.join(columns[:30])}",
                    )
                )
    return found


def check_target(spec: SystemSpec, frame: pd.DataFrame) -> list[Anomaly]:
    """Target present, not constant, of the right kind for the task."""
    target, task = spec.problem.target, spec.problem.task
    series = frame[target]
    found = []
    missing = int(series.isna().sum())
    if missing == len(series):
        return [
            Anomaly(
                "target_missing",
                ERROR,
                target,
                f"target '{target}' has no values",
                "point problem.target at the label column",
            )
        ]
    if missing:
        found.append(
            Anomaly(
                "target_missing",
                WARNING,
                target,
                f"{missing} rows ({missing / len(series):.1%}) have no target; training drops them",
                "fill in the labels, or accept that these rows are not used",
                {"missing": missing},
            )
        )
    classes = classes_of(series)
    if len(classes) < 2:
        found.append(
            Anomaly(
                "target_constant",
                ERROR,
                target,
                f"target '{target}' has a single value ({classes[0]!r})",
                "there is nothing to learn: check the source or the target column",
                {"value": classes[0]},
            )
        )
        return found
    kind = get_task(task)
    if kind.grouped:
        return found + check_relevance(spec, series)
    if not kind.classification and not pd.api.types.is_numeric_dtype(series.dtype):
        found.append(
            Anomaly(
                "type_mismatch",
                ERROR,
                target,
                f"{task} needs a numeric target; '{target}' "
                f"holds {series.dtype} values such as {classes[:3]}",
                "set problem.task to binary or multiclass, or fix the target column",
            )
        )
    if kind.thresholded:  # one score and a threshold: exactly two classes
        if len(classes) != 2:
            found.append(
                Anomaly(
                    "target_classes",
                    ERROR,
                    target,
                    f"binary task but '{target}' has {len(classes)} values ({classes[:5]})",
                    "use problem.task: multiclass, or map the labels to two classes",
                    {"n_classes": len(classes)},
                )
            )
        else:
            positive_class(spec, classes)  # raises when the declared class is absent
    return found


_RELEVANCE_FIX = (
    "give '{target}' graded relevance: 0 for an irrelevant row, then 1, 2, ... for better "
    "ones (e.g. a rating, or clicked 1 / bought 2); map labels to grades at the source"
)


def check_relevance(spec: SystemSpec, series: pd.Series) -> list[Anomaly]:
    """A ranking target is graded relevance: numbers, none below 0."""
    target = spec.problem.target
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series):
        values = pd.to_numeric(series, errors="coerce")
        bad = series[values.isna() & series.notna()]
        if len(bad) or pd.api.types.is_bool_dtype(series):
            examples = [str(v) for v in pd.unique(bad)[:5]] or ["True", "False"]
            return [
                Anomaly(
                    "target_relevance",
                    ERROR,
                    target,
                    f"a ranking needs numeric relevance; '{target}' holds {series.dtype} "
                    f"values such as {', '.join(repr(v) for v in examples[:3])}",
                    _RELEVANCE_FIX.format(target=target),
                    {"kind": "not_numeric", "count": len(bad), "examples": examples},
                )
            ]
        series = values
    negative = series < 0
    if negative.any():
        n = int(negative.sum())
        return [
            Anomaly(
                "target_relevance",
                ERROR,
                target,
                f"{n} rows of '{target}' have a negative relevance (lowest "
                f"{float(series.min()):g}); ranking metrics need relevance >= 0",
                _RELEVANCE_FIX.format(target=target)
                + f", or shift the scale so its lowest value is 0 (e.g. {target} - min)",
                {"kind": "negative", "count": n, "min": float(series.min())},
            )
        ]
    return []


def check_groups(spec: SystemSpec, frame: pd.DataFrame) -> tuple[list[Anomaly], dict]:
    """A ranking's lists: how long they are, rows with no group, lists too short to rank,
    and lists with no relevant row (relevance > 0), which no ranking metric can score."""
    column, target = spec.problem.group, spec.problem.target
    codes = ranking.group_codes(frame[column])
    lengths = ranking.list_lengths(codes)
    info: dict[str, Any] = {"column": column, "list_length": lengths}
    found = []
    missing = int((codes < 0).sum())
    info["rows_without_group"] = missing
    if missing:
        found.append(
            Anomaly(
                "group_missing",
                ERROR,
                column,
                f"{missing} rows ({missing / len(codes):.1%}) have no '{column}' "
                "(problem.group): a ranked row must belong to a list",
                f"fill '{column}' for those rows at the source, or drop them",
                {"count": missing, "share": _round(missing / len(codes))},
            )
        )
    if not lengths["n_groups"]:
        return found, info
    known = codes >= 0
    sizes = np.bincount(codes[known])
    names = pd.Series(pd.unique(frame[column].dropna()))  # code i is the i-th distinct value
    small = np.flatnonzero(sizes < ranking.MIN_ROWS)
    info["small_groups"] = len(small)
    if len(small):
        found.append(
            Anomaly(
                "group_too_small",
                WARNING,
                column,
                f"{len(small)} of {len(sizes)} groups of '{column}' ({len(small) / len(sizes):.1%})"
                f" hold a single row: there is nothing to rank in them, e.g. "
                f"{', '.join(repr(str(v)) for v in names.iloc[small[:3]])}",
                "they carry no signal for a ranker and no ranking metric can score them: drop "
                "them, or check that problem.group names the column that forms the lists",
                {
                    "count": len(small),
                    "share": _round(len(small) / len(sizes)),
                    "examples": [str(v) for v in names.iloc[small[:5]]],
                },
            )
        )
    relevance = pd.to_numeric(frame[target], errors="coerce").to_numpy(dtype=float)
    relevant = np.bincount(codes[known], weights=(relevance[known] > 0).astype(float))
    empty = np.flatnonzero(relevant == 0)
    info["groups_without_relevant"] = len(empty)
    info["relevant_per_group"] = {
        "median": float(np.median(relevant)),
        "mean": round(float(relevant.mean()), 2),
    }
    if relevant.sum() == known.sum():
        found.append(
            Anomaly(
                "all_relevant",
                INFO,
                target,
                f"every row has '{target}' > 0, so every row counts as relevant: precision@k, "
                "MAP and MRR give every order the same score; graded metrics (NDCG) still "
                "tell orders apart",
                f"judge models by ndcg, or shift '{target}' so that the rows not worth "
                "showing are 0",
                {"rows": int(known.sum())},
            )
        )
    if len(empty):
        share = len(empty) / len(sizes)
        rows = int(sizes[empty].sum())
        found.append(
            Anomaly(
                "group_no_relevant",
                WARNING,
                column,
                f"{len(empty)} of {len(sizes)} groups of '{column}' ({share:.1%}, {rows:,} rows)"
                f" have no relevant row ('{target}' > 0): ranking metrics skip them and they "
                "carry no signal for the ranking",
                "check the labels of those lists (clicks lost, a join that dropped them); "
                "drop them if they are real lists nobody acted on",
                {
                    "count": len(empty),
                    "share": _round(share),
                    "rows": rows,
                    "examples": [str(v) for v in names.iloc[empty[:5]]],
                },
            )
        )
    return found, info


def check_types(schema_cols: dict, used: set[str]) -> list[Anomaly]:
    """Values the column's type cannot read (``abc`` in a numeric column)."""
    found = []
    for name, col in schema_cols.items():
        if not col.parse_failures:
            continue
        how = "declared" if col.declared else "inferred"
        found.append(
            Anomaly(
                "type_mismatch",
                ERROR if name in used else WARNING,
                name,
                f"{col.parse_failures} values of '{name}' are not {col.type} ({how} type), "
                f"e.g. {', '.join(repr(v) for v in col.parse_examples[:3])}",
                f"fix those rows at the source, or declare data.columns.{name}.type to match",
                {"count": col.parse_failures, "examples": col.parse_examples, "type": col.type},
            )
        )
    return found


def check_ranges(spec: SystemSpec, frame: pd.DataFrame) -> list[Anomaly]:
    """Values outside the ranges and domains the spec declares."""
    found = []
    for name, declared in spec.data.columns.items():
        if name not in frame:
            continue
        series = frame[name]
        if declared.min is not None or declared.max is not None:
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
            low = values < declared.min if declared.min is not None else np.zeros(len(values), bool)
            high = (
                values > declared.max if declared.max is not None else np.zeros(len(values), bool)
            )
            bad = low | high
            if bad.any():
                found.append(
                    Anomaly(
                        "out_of_range",
                        ERROR,
                        name,
                        f"{int(bad.sum())} values of '{name}' fall outside "
                        f"[{declared.min}, {declared.max}] (seen {np.nanmin(values):g}"
                        f"…{np.nanmax(values):g})",
                        "fix the rows at the source, or widen data.columns."
                        f"{name}.min/max if the range was wrong",
                        {
                            "count": int(bad.sum()),
                            "examples": sorted(set(values[bad][:5].tolist())),
                        },
                    )
                )
        if declared.domain is not None:
            allowed = {str(v) for v in declared.domain}
            text = series.dropna().astype(str)
            bad = text[~text.isin(allowed)]
            if len(bad):
                found.append(
                    Anomaly(
                        "out_of_domain",
                        ERROR,
                        name,
                        f"{len(bad)} values of '{name}' are not in its declared domain, e.g. "
                        f"{', '.join(repr(v) for v in pd.unique(bad)[:3])}",
                        f"fix the rows, or add the values to data.columns.{name}.domain",
                        {"count": len(bad), "examples": [str(v) for v in pd.unique(bad)[:5]]},
                    )
                )
    return found


def check_missing(spec: SystemSpec, schema_cols: dict) -> list[Anomaly]:
    """Columns missing more than the allowed share of values."""
    found = []
    for name, col in schema_cols.items():
        declared = spec.data.columns.get(name)
        limit = declared.max_missing if declared and declared.max_missing is not None else None
        severity = ERROR if limit is not None else WARNING
        limit = spec.data.checks.max_missing if limit is None else limit
        if col.missing_rate > limit:
            found.append(
                Anomaly(
                    "missing_values",
                    severity,
                    name,
                    f"'{name}' misses {col.missing_rate:.1%} of its values (limit {limit:.0%})",
                    "fix the source, exclude the column, or raise data.checks.max_missing",
                    {"missing_rate": _round(col.missing_rate), "limit": limit},
                )
            )
    return found


def _same_values(a: pd.Series, b: pd.Series) -> bool:
    """Equal values row by row; the first thousand rows rule most pairs out cheaply."""
    for head in (1000, None):
        x, y = a.iloc[:head], b.iloc[:head]
        if isinstance(x.dtype, pd.CategoricalDtype) or isinstance(y.dtype, pd.CategoricalDtype):
            x, y = x.astype(object), y.astype(object)
        if not x.reset_index(drop=True).equals(y.reset_index(drop=True)):
            return False
    return True


def check_constant_and_duplicate_columns(
    frame: pd.DataFrame, schema_cols: dict, features: list[str]
) -> list[Anomaly]:
    """Feature columns with one value, and feature columns identical to another column."""
    found = []
    # only columns alike in type, distinct count, missing count and range can be equal
    groups: dict[tuple, list[str]] = {}
    for name in features:
        col = schema_cols[name]
        if col.n_unique + (col.missing > 0) <= 1:
            found.append(
                Anomaly(
                    "constant_column",
                    WARNING,
                    name,
                    f"'{name}' has a single value; it carries no information",
                    f"add '{name}' to features.exclude",
                    {"value": str(frame[name].iloc[0])},
                )
            )
            continue
        key = (col.type, col.n_unique, col.missing, col.min, col.max)
        groups.setdefault(key, []).append(name)
    for names in groups.values():
        for i, other in enumerate(names[1:], 1):
            first = next((n for n in names[:i] if _same_values(frame[n], frame[other])), None)
            if first is not None:
                found.append(
                    Anomaly(
                        "duplicate_column",
                        WARNING,
                        other,
                        f"'{other}' is identical to '{first}'",
                        f"add '{other}' to features.exclude",
                        {"same_as": first},
                    )
                )
    return found


def check_duplicate_rows(row_hashes: np.ndarray) -> list[Anomaly]:
    """Rows repeated exactly: inflated weight, and a leak when copies straddle the split."""
    dup = int(pd.Series(row_hashes).duplicated().sum())
    n = len(row_hashes)
    if not dup:
        return []
    return [
        Anomaly(
            "duplicate_rows",
            WARNING,
            None,
            f"{dup} rows ({dup / n:.2%}) repeat an earlier row exactly",
            "drop duplicates at the source unless repeats are real events (then add an event id)",
            {"count": dup, "share": _round(dup / n)},
        )
    ]


def check_identifiers(schema_cols: dict, features: list[str], n_rows: int) -> list[Anomaly]:
    """Feature columns that look like identifiers (unique per row) or have huge cardinality."""
    found = []
    for name in features:
        col = schema_cols[name]
        unique_share = col.n_unique / max(col.count - col.missing, 1)
        if col.inferred_type == "identifier" or (
            col.type == "categorical" and unique_share > 0.5 and n_rows >= 50
        ):
            found.append(
                Anomaly(
                    "identifier_feature",
                    WARNING,
                    name,
                    f"'{name}' looks like an identifier ({col.n_unique} distinct values in "
                    f"{col.count} rows) but is used as a feature: a model memorises it",
                    f"add '{name}' to features.exclude, or set problem.id: {name}",
                    {"n_unique": col.n_unique, "unique_share": _round(unique_share)},
                )
            )
    return found


def check_unused_text(spec: SystemSpec, schema_cols: dict) -> list[Anomaly]:
    """Free-text columns are not featurized yet: say so rather than drop them silently."""
    return [
        Anomaly(
            "unused_text",
            INFO,
            name,
            f"'{name}' holds free text ({col.n_unique} distinct values); it is not used "
            "as a feature",
            f"add '{name}' to features.exclude to silence this, or declare "
            f"data.columns.{name}.type: categorical if its values are labels",
            {"n_unique": col.n_unique},
        )
        for name, col in schema_cols.items()
        if col.type == "text" and name not in spec.features.exclude and name != spec.problem.target
    ]


def check_imbalance(spec: SystemSpec, frame: pd.DataFrame) -> list[Anomaly]:
    """A class rarer than ``data.checks.min_class_share``."""
    if not get_task(spec.problem.task).classification:
        return []
    shares = frame[spec.problem.target].value_counts(normalize=True, dropna=True)
    if shares.empty or shares.min() >= spec.data.checks.min_class_share:
        return []
    rare = shares.idxmin()
    rare = rare.item() if isinstance(rare, np.generic) else rare  # 1.0, not np.float64(1.0)
    return [
        Anomaly(
            "class_imbalance",
            WARNING,
            spec.problem.target,
            f"class {rare!r} is {shares.min():.1%} of rows (limit "
            f"{spec.data.checks.min_class_share:.0%})",
            "use class weights, judge models by PR AUC or costs (problem.costs), and pick the "
            "decision threshold from the costs rather than 0.5",
            {"shares": {str(k): _round(v) for k, v in shares.items()}},
        )
    ]


def check_leakage(
    spec: SystemSpec,
    frame: pd.DataFrame,
    features: list[str],
    types: dict[str, str],
) -> list[Anomaly]:
    """Features that are the target in another form (errors), and features that merely
    predict it strongly (warnings); see :mod:`mlsd.data.leakage` for the tests."""
    y_all, classes = encode_target(frame, spec)
    keep = ~np.isnan(y_all)
    grouped = get_task(spec.problem.task).grouped and spec.problem.group in frame.columns
    codes = ranking.group_codes(frame[spec.problem.group]) if grouped else None
    if codes is not None:
        keep &= codes >= 0
    if keep.sum() > leakage.SAMPLE:  # a seeded sample keeps this check fast on big tables
        rng = np.random.default_rng(spec.seed)
        if codes is None:
            keep &= rng.random(len(keep)) < leakage.SAMPLE / keep.sum()
        else:  # whole groups, so that orders within a group can be scored
            n_groups = int(codes.max()) + 1
            keep &= (rng.random(n_groups) < leakage.SAMPLE / keep.sum())[np.maximum(codes, 0)]
    rows = np.flatnonzero(keep)
    if len(rows) < 2:
        return []
    y, sample = y_all[rows], frame.iloc[rows]
    groups = None if codes is None else np.unique(codes[rows], return_inverse=True)[1]
    task, target = spec.problem.task, spec.problem.target
    findings = leakage.column_findings(
        sample, y, features, task, len(classes), spec.data.checks.leakage, spec.seed, groups
    )
    found = [_leakage_anomaly(f, target, len(classes)) for f in findings]
    flagged = {f.column for f in findings if f.determines}
    numeric = [n for n in features if types[n] == "numeric" and n not in flagged]
    parts = leakage.exact_sum(sample[numeric].to_numpy(dtype=float, na_value=np.nan), y, numeric)
    if parts is not None:
        found = [a for a in found if a.column not in parts["columns"]]
        coef = parts["coefficients"]
        formula = " + ".join(f"{c:g}·{n}" for c, n in zip(coef[:-1], parts["columns"], strict=True))
        names = ", ".join(parts["columns"])
        found += [
            Anomaly(
                "leakage",
                ERROR,
                name,
                f"'{target}' = {formula} + {coef[-1]:g} (R² {parts['r2']:.5f}): together "
                f"{names} determine the target exactly; they are parts of it",
                f"add {names} to features.exclude (or acknowledge 'leakage:{name}' if they "
                "are really known at prediction time)",
                {"kind": "sum", **parts},
            )
            for name in parts["columns"]
        ]
    return found


_DETERMINES_FIX = (
    "if '{name}' is only known once the outcome is, add it to features.exclude; if it is "
    "really known at prediction time, acknowledge it: data.checks.acknowledge: "
    "['leakage:{name}']"
)


def _leakage_anomaly(f: leakage.Finding, target: str, n_classes: int) -> Anomaly:
    """The anomaly for one column's leakage finding, its message saying which kind and why."""
    e, name = f.evidence, f.column
    if f.kind == "monotone":
        why = (
            f"the ranks of '{name}' and '{target}' agree exactly (Spearman {e['spearman']:.4f}):"
            " it is a monotone function of the target, such as a copy, a unit conversion or a log"
        )
    elif f.kind == "lookup" and n_classes:
        why = (
            f"the class of the row with the nearest '{name}' is the class of held-out rows with "
            f"{e['errors']} errors in {e['rows']} (always guessing the majority class makes "
            f"{e['majority_errors']}): '{name}' determines '{target}'"
        )
    elif f.kind == "order":
        why = (
            f"ordering each group by '{name}' ({e['direction']}) alone ranks "
            f"{e['perfect_share']:.1%} of the {e['groups']} groups whose '{target}' varies "
            "perfectly: it is the relevance in another form, such as a copy or a rank"
        )
    elif f.kind == "lookup":
        why = (
            f"the target of the row with the nearest '{name}' predicts held-out targets with "
            f"R² {e['r2']:.5f}: '{name}' determines '{target}'"
        )
    else:
        held_out = (
            f"NDCG {e['ndcg']:.4f} against {e['random']:.4f} for a random order on held-out "
            f"groups: it closes {e['score']:.1%} of the gap to the ideal order"
            if "random" in e
            else f"{e['metric']} {e['score']:.4f} on held-out rows"
        )
        return Anomaly(
            "leakage",
            WARNING,
            name,
            f"'{name}' alone predicts '{target}' strongly ({held_out}) but does not determine "
            "it: a strong feature is not a leak, as long as its value is known when the "
            "prediction is made",
            f"check that '{name}' is recorded before the outcome; acknowledge it to silence "
            f"this: data.checks.acknowledge: ['leakage:{name}']",
            {"kind": "strong", **e},
        )
    return Anomaly(
        "leakage",
        ERROR,
        name,
        f"'{name}' is the target in another form: {why}",
        _DETERMINES_FIX.format(name=name),
        {"kind": f.kind, **e},
    )


SPLIT_DRIFT_ALPHA = 0.01  # family-wise, over the columns tested (Bonferroni)

_SPLIT_DRIFT_FIX = {
    "time": "expected for a time split when the data changes over time (trend, season): test "
    "rows come after training rows; check the test period is one the model will serve, and "
    "watch this column in monitoring",
    "group": "a group split keeps each entity's rows together, so test entities can differ "
    "from training ones; check groups are not assigned by this column, and watch it in "
    "monitoring",
}
_SPLIT_DRIFT_RANDOM_FIX = (
    "unexpected for a {method} split, which draws test rows like training rows: check whether "
    "rows are grouped or duplicated (the same entity or event in both), or use a time or "
    "group split that says how rows arrive; then watch this column in monitoring"
)


def _ks_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov p-value of the finite values of ``a`` and ``b``."""
    from scipy.stats import ks_2samp

    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return 1.0
    return float(ks_2samp(a, b).pvalue)


def _chi2_p_value(a: pd.Series, b: pd.Series) -> float:
    """Chi-square homogeneity p-value of two samples of categories (missing is a category);
    categories seen fewer than 5 times in both together are pooled."""
    from scipy.stats import chi2_contingency

    counts = pd.concat(
        [
            a.astype(object).where(a.notna(), "__missing__").value_counts(),
            b.astype(object).where(b.notna(), "__missing__").value_counts(),
        ],
        axis=1,
    ).fillna(0)
    total = counts.sum(axis=1)
    table = counts[total >= 5]
    if (total < 5).any():
        table = pd.concat([table, counts[total < 5].sum().to_frame().T])
    table = table[table.sum(axis=1) > 0].to_numpy(dtype=np.float64)
    if table.shape[0] < 2 or (table.sum(axis=0) == 0).any():
        return 1.0
    return float(chi2_contingency(table.T).pvalue)


def _group_level_columns(spec: SystemSpec, frame: pd.DataFrame, names: list[str]) -> list[str]:
    """Of ``names``, the columns that hold one value per group of a grouped task."""
    if not get_task(spec.problem.task).grouped or spec.problem.group not in frame.columns:
        return []
    groups = frame.groupby(spec.problem.group, dropna=False, sort=False, observed=True)
    counts = groups[[n for n in names if n != spec.problem.group]].nunique(dropna=False)
    return [n for n in counts.columns if counts[n].max() <= 1]


def check_split_drift(
    spec: SystemSpec,
    frame: pd.DataFrame,
    labels: np.ndarray,
    features: list[str],
    types: dict[str, str],
) -> list[Anomaly]:
    """Columns (and the target) distributed differently in test than in train: a PSI above
    ``data.checks.split_drift_psi`` and a significant two-sample test (KS for numbers,
    chi-square for categories and booleans; Bonferroni over the columns at
    :data:`SPLIT_DRIFT_ALPHA`). PSI alone is noise on small splits: on 178 rows, ten
    columns of a stratified split passed 0.25 by chance."""
    cols = [*features, spec.problem.target]
    col_types = {
        c: (
            "categorical"
            if get_task(spec.problem.task).classification and c == spec.problem.target
            else types[c]
        )
        for c in cols
    }
    full_train, full_test = frame[labels == TRAIN], frame[labels == TEST]
    if full_train.empty or full_test.empty:
        return []
    tested = [c for c in cols if col_types[c] in ("numeric", "categorical", "boolean")]
    # a ranking's group-level columns (a user's age) are tested on one row per group: its
    # rows repeat one value, and counting them as independent finds drift in every split
    per_group = _group_level_columns(spec, frame, tested)
    first = None
    if per_group:
        first = ~pd.Series(ranking.group_codes(frame[spec.problem.group])).duplicated().to_numpy()
    references = {
        False: profile(full_train[cols], col_types)["columns"],
        True: profile(
            frame[(labels == TRAIN) & first][per_group], {n: col_types[n] for n in per_group}
        )["columns"]
        if per_group
        else {},
    }
    alpha = SPLIT_DRIFT_ALPHA / max(len(tested), 1)
    method = spec.split_method
    fix = _SPLIT_DRIFT_FIX.get(method) or _SPLIT_DRIFT_RANDOM_FIX.format(method=method)
    found = []
    for name in tested:
        level = name in per_group
        train, test = (
            (frame[(labels == TRAIN) & first], frame[(labels == TEST) & first])
            if level
            else (full_train, full_test)
        )
        kind, ref = col_types[name], references[level][name]
        if kind == "numeric":
            values = test[name].to_numpy(dtype=float, na_value=np.nan)
            value = psi_numeric(ref, values)
        elif kind == "categorical":
            value = psi_categorical(ref, test[name])
        else:
            p, q = ref.get("true_rate") or 0.0, float(np.nanmean(test[name])) if len(test) else 0
            value = psi(np.array([1 - p, p]), np.array([1 - q, q]))
        if value <= spec.data.checks.split_drift_psi:
            continue
        if kind == "numeric":
            test_name = "KS"
            p_value = _ks_p_value(train[name].to_numpy(dtype=float, na_value=np.nan), values)
        else:
            test_name = "chi-square"
            p_value = _chi2_p_value(train[name], test[name])
        if p_value >= alpha:  # a PSI this large is within chance on splits this small
            continue
        what = "the target" if name == spec.problem.target else f"'{name}'"
        found.append(
            Anomaly(
                "split_drift",
                WARNING,
                name,
                f"{what} is distributed differently in test than in train (PSI {value:.2f}, "
                f"{test_name} p={p_value:.1g}, {len(train):,} vs {len(test):,} "
                f"{'groups' if level else 'rows'})",
                fix,
                {
                    "psi": _round(value),
                    "threshold": spec.data.checks.split_drift_psi,
                    "test": test_name.lower(),
                    "p_value": float(f"{p_value:.4g}"),
                    "alpha": _round(alpha, 6),
                    "split": method,
                    "n_train": len(train),
                    "n_test": len(test),
                    "unit": "group" if level else "row",
                },
            )
        )
    return found


# --- orchestration ----------------------------------------------------------------------------


def _acknowledge(spec: SystemSpec, anomalies: list[Anomaly]) -> None:
    for a in anomalies:
        for ack in spec.data.checks.acknowledge:
            if ack.check == a.check and (ack.column is None or ack.column == a.column):
                a.acknowledged = True
                if ack.reason:
                    a.evidence["acknowledged_because"] = ack.reason


def validate_dataset(
    spec: SystemSpec, dataset: Dataset, stages: Stages | None = None
) -> ValidationReport:
    """Run every check on a loaded snapshot; split it as the spec says first."""
    stages = stages or Stages(show=False)
    frame, schema = dataset.frame, dataset.schema
    columns = list(frame.columns)
    anomalies = check_spec_columns(spec, columns)
    base = {
        "system": spec.name,
        "snapshot": dataset.snapshot_id,
        "n_rows": len(frame),
        "n_columns": len(columns),
        "column_types": schema.types,
        "timings": stages.timings,
        "peak_memory_mb": stages.peak_memory_mb,
    }
    if any(a.column == spec.problem.target for a in anomalies):
        return ValidationReport(**base, features=[], split={}, anomalies=anomalies)
    try:
        features = list(select_features(spec, schema.types))
    except FeatureError:  # names already reported by check_spec_columns
        features = [c for c in columns if c in schema.types and c != spec.problem.target]
    used = {*features, spec.problem.target, *spec.problem.time}
    with stages("checks"):
        anomalies += check_target(spec, frame)
        anomalies += check_types(schema.columns, used)
        anomalies += check_ranges(spec, frame)
        anomalies += check_missing(spec, schema.columns)
        anomalies += check_constant_and_duplicate_columns(frame, schema.columns, features)
        anomalies += check_duplicate_rows(dataset.row_hashes)
        anomalies += check_identifiers(schema.columns, features, len(frame))
        anomalies += check_unused_text(spec, schema.columns)
        anomalies += check_imbalance(spec, frame)
    groups = None
    if get_task(spec.problem.task).grouped and spec.problem.group in frame.columns:
        with stages("groups"):
            found_groups, groups = check_groups(spec, frame)
            anomalies += found_groups
    split: dict = {}
    if not any(a.blocking and a.check.startswith(("target", "missing_column")) for a in anomalies):
        with stages("split"):
            labels, split = split_dataset(dataset, spec)
        with stages("leakage"):
            anomalies += check_leakage(spec, frame, features, schema.types)
        with stages("split_drift"):
            anomalies += check_split_drift(spec, frame, labels, features, schema.types)
    _acknowledge(spec, anomalies)
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    anomalies.sort(key=lambda a: (a.acknowledged, order[a.severity], a.check, a.column or ""))
    return ValidationReport(
        **base, features=features, split=split, anomalies=anomalies, groups=groups
    )


def validate(
    spec: SystemSpec, workspace: Workspace | None = None, *, progress: bool | None = None
) -> ValidationReport:
    """Load the spec's data as a snapshot, validate it, and write the JSON report.

    The report lands in ``<workspace>/reports/validation.json``. ``progress`` shows a
    progress bar on stderr (default: when stderr is a terminal).
    """
    workspace = workspace or Workspace.for_spec(spec)
    steps = 8 if get_task(spec.problem.task).grouped else 7  # + the groups' checks
    stages = Stages(steps, label=f"validate {spec.name}", show=progress)
    try:
        dataset = load_dataset(spec, workspace, stages)
        report = validate_dataset(spec, dataset, stages)
    finally:
        stages.close()
    write_json(workspace.reports / "validation.json", report.to_dict())
    return report
