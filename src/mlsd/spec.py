"""``system.yaml``: the declaration of one ML system, one section per design step.

The pydantic models below are the single source of truth: they validate the file, give
defaults, produce the JSON schema (``mlsd schema``), the comments ``mlsd init`` writes,
and the text of every error. Errors name the file, the line and the key path, and say how
to fix the problem, with a did-you-mean for misspelt keys and values.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from mlsd.errors import SpecError, did_you_mean

Task = Literal["binary", "multiclass", "regression", "ranking"]
ColumnType = Literal["numeric", "boolean", "categorical", "datetime", "text", "identifier"]
DatetimePart = Literal["year", "month", "day", "dayofweek", "dayofyear", "hour", "minute"]
Scalar = str | int | float | bool

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``15m``, ``24h``, ``30d`` or ``2w``."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit: s, m, h, d or w (e.g. 24h)"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, AfterValidator(_duration)]


def _listify(data: Any, key: str) -> Any:
    """Let a single name stand for a one-element list (``time: day``)."""
    if isinstance(data, dict) and isinstance(data.get(key), str):
        return {**data, key: [data[key]]}
    return data


class Section(BaseModel):
    """Base of every spec section: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


# --- step 1: problem -------------------------------------------------------------------------


class Costs(Section):
    false_positive: float = Field(1.0, ge=0, description="Cost of one false positive, in any unit.")
    false_negative: float = Field(1.0, ge=0, description="Cost of one false negative, same unit.")


class ProblemSpec(Section):
    task: Task = Field(description="What is predicted: binary | multiclass | regression | ranking.")
    target: str = Field(min_length=1, description="Column holding the label to predict.")
    positive_class: Scalar | None = Field(
        None,
        description="Binary tasks: the label value that counts as positive (default: 1, "
        "true, yes, or the minority class).",
    )
    id: str | None = Field(None, description="Entity id column (a user, a customer, a station).")
    time: list[str] = Field(
        default_factory=list,
        description="Event-time columns, most significant first; they order time splits and "
        "monitoring windows.",
    )
    objective: str = Field("", description="The business objective in one sentence.")
    costs: Costs = Field(default_factory=Costs, description="Costs of wrong decisions.")
    latency_budget_ms: float = Field(
        100.0, gt=0, le=60000, description="Online prediction budget per request, in ms."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return _listify(data, "time")


# --- step 2: metrics -------------------------------------------------------------------------


class Bound(Section):
    min: float | None = Field(None, description="Lowest acceptable value.")
    max: float | None = Field(None, description="Highest acceptable value.")


class MetricsSpec(Section):
    primary: str | None = Field(
        None,
        description="Offline metric that selects models (default: rmse for regression, "
        "roc_auc for binary, log_loss for multiclass, ndcg@10 for ranking).",
    )
    guardrails: dict[str, Bound] = Field(
        default_factory=dict,
        description="Metrics that must stay within bounds, e.g. {log_loss: {max: 0.2}}.",
    )
    online: list[str] = Field(
        default_factory=list, description="Business metrics watched online (e.g. ctr)."
    )


# --- step 3: architecture --------------------------------------------------------------------


def not_available_yet(value: str, available: str, issue: str) -> ValueError:
    """The error for a declared option whose behaviour is not built yet: said, not ignored."""
    return ValueError(f"{value} is not available yet ({issue}); use {available}")


class ArchitectureSpec(Section):
    kind: Literal["single", "funnel"] = Field(
        "single",
        description="One model, or candidate generation → ranking → filters (funnel: not "
        "available yet).",
    )

    @field_validator("kind")
    @classmethod
    def _available(cls, value: str) -> str:
        if value != "single":
            raise not_available_yet(value, "single", "step 3, [recsys]")
        return value


# --- step 4: data ----------------------------------------------------------------------------


class SourceSpec(Section):
    path: str | None = Field(
        None,
        description="CSV or Parquet file, or a folder of Parquet files; relative to system.yaml.",
    )
    sql: str | None = Field(
        None, description="A DuckDB query over files, e.g. select * from 'logs/*.parquet'."
    )
    format: Literal["auto", "csv", "parquet"] = Field(
        "auto", description="File format; auto reads it from the extension."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_of(self) -> SourceSpec:
        if (self.path is None) == (self.sql is None):
            raise ValueError("give exactly one of `path` or `sql`")
        return self


class ColumnSpec(Section):
    type: ColumnType | None = Field(None, description="Override the inferred column type.")
    min: float | None = Field(None, description="Lowest valid value (numeric columns).")
    max: float | None = Field(None, description="Highest valid value (numeric columns).")
    domain: list[Scalar] | None = Field(
        None, description="The only valid values (categorical columns)."
    )
    max_missing: float | None = Field(
        None, ge=0, le=1, description="Largest acceptable share of missing values."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"type": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _range(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self


class SplitSpec(Section):
    method: Literal["auto", "random", "stratified", "time", "group"] = Field(
        "auto",
        description="auto: time when problem.time is set, stratified for "
        "classification, random otherwise.",
    )
    valid: float = Field(0.15, ge=0, lt=1, description="Share of rows for validation.")
    test: float = Field(0.15, gt=0, lt=1, description="Share of rows for the final test.")
    group: str | None = Field(
        None,
        description="Group split: column whose values never cross splits (default: problem.id).",
    )

    @model_validator(mode="after")
    def _shares(self) -> SplitSpec:
        if self.valid + self.test >= 0.9:
            raise ValueError(
                f"valid + test = {self.valid + self.test:g} leaves under 10% for training"
            )
        return self


class Acknowledgement(Section):
    check: str = Field(description="Name of the validation check, e.g. leakage.")
    column: str | None = Field(None, description="Column it applies to; none means all.")
    reason: str = Field("", description="Why this finding is accepted.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            check, _, column = data.partition(":")
            return {"check": check.strip(), "column": column.strip() or None}
        return data


class ChecksSpec(Section):
    max_missing: float = Field(
        0.5, ge=0, le=1, description="Warn when a column misses more than this share."
    )
    min_class_share: float = Field(
        0.1, ge=0, le=0.5, description="Warn of class imbalance below this share of rows."
    )
    leakage: float = Field(
        0.98,
        gt=0.5,
        le=1,
        description="A feature that alone scores above this on held-out rows (R², ROC AUC "
        "or accuracy) is reported as strong (a warning). Errors are kept for columns that "
        "determine the target (mlsd.data.leakage).",
    )
    split_drift_psi: float = Field(
        0.25, gt=0, description="Warn when a column's PSI between train and test exceeds this."
    )
    acknowledge: list[Acknowledgement] = Field(
        default_factory=list,
        description="Findings accepted on purpose: `check:column` or "
        "{check, column, reason}; they are reported but never block.",
    )


class DataSpec(Section):
    source: SourceSpec = Field(description="Where the rows come from.")
    columns: dict[str, ColumnSpec] = Field(
        default_factory=dict, description="Schema overrides by column: type, range, domain."
    )
    split: SplitSpec = Field(default_factory=SplitSpec, description="Train/valid/test split.")
    label_delay: Duration = Field(
        "0s", description="How long after a prediction its label arrives (e.g. 24h)."
    )
    checks: ChecksSpec = Field(default_factory=ChecksSpec, description="Validation thresholds.")


# --- step 5: features ------------------------------------------------------------------------


class FeatureColumnSpec(Section):
    impute: Literal["median", "mean", "zero"] | None = Field(
        None, description="Numeric: how missing values are filled (default: features.impute)."
    )
    standardize: bool | None = Field(
        None, description="Numeric: scale to zero mean, unit variance for linear models."
    )
    cyclical: float | None = Field(
        None, gt=0, description="Numeric: period (e.g. 24 for hours) to add sin/cos encodings."
    )
    min_frequency: int | None = Field(
        None, ge=1, description="Categorical: rarer values go to the rare bucket."
    )
    max_categories: int | None = Field(
        None, ge=1, le=100000, description="Categorical: keep at most this many values."
    )
    parts: list[DatetimePart] | None = Field(
        None, description="Datetime: which parts to extract (default: features.datetime_parts)."
    )


class FeaturesSpec(Section):
    exclude: list[str] = Field(
        default_factory=list, description="Columns that never reach a model (leaks, ids)."
    )
    include: list[str] | None = Field(None, description="If set, only these columns are features.")
    columns: dict[str, FeatureColumnSpec] = Field(
        default_factory=dict, description="Per-column transform options."
    )
    impute: Literal["median", "mean", "zero"] = Field(
        "median", description="Default numeric imputation."
    )
    missing_indicator: bool = Field(
        True,
        description="Add an is-missing column for numeric columns that had missing "
        "values in training.",
    )
    standardize: bool = Field(True, description="Standardize numeric inputs of linear models.")
    min_frequency: int = Field(
        5, ge=1, description="Categories seen fewer times in training go to a rare bucket."
    )
    max_categories: int = Field(
        100, ge=1, le=100000, description="Most frequent categories kept per column."
    )
    datetime_parts: list[DatetimePart] = Field(
        default_factory=lambda: ["year", "month", "dayofweek", "hour"],
        description="Parts extracted from datetime columns; month, weekday and hour also get "
        "sin/cos encodings.",
    )
    crosses: list[list[str]] = Field(
        default_factory=list, description="Categorical crosses, e.g. [[weekday, hr]]."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return _listify(data, "exclude")


# --- steps 6-9 (grown by later issues) ------------------------------------------------------


class TuningSpec(Section):
    budget_s: float = Field(
        0.0,
        ge=0,
        le=86400,
        description="Tuning time budget in seconds for all candidates together (each gets an "
        "equal share of what is left); 0 = default parameters.",
    )
    max_trials: int = Field(
        1000,
        ge=1,
        le=100000,
        description="Most trials per candidate; the time budget usually ends the search first.",
    )


class ModelGateSpec(Section):
    beat_baselines_by: float = Field(
        0.0,
        ge=0,
        description="Margin on the primary metric by which the chosen model must "
        "beat the best baseline to be registered.",
    )


class BaselinesSpec(Section):
    heuristic: str | None = Field(
        None,
        description="A rule over columns, e.g. `balance > 1800`, or `mean of bikers by "
        "hr`; default: the best single-feature split learned on train.",
    )


class ModelsSpec(Section):
    candidates: list[Literal["linear", "lightgbm"]] = Field(
        default_factory=lambda: ["linear", "lightgbm"],
        min_length=1,
        description="Model families to try.",
    )
    baselines: BaselinesSpec = Field(default_factory=BaselinesSpec, description="Baselines.")
    tuning: TuningSpec = Field(default_factory=TuningSpec, description="Hyper-parameter search.")
    gate: ModelGateSpec = Field(default_factory=ModelGateSpec, description="Registration gate.")
    class_weight: Literal["auto", "balanced", "none"] = Field(
        "auto",
        description="Classification: balanced class weights, none, or auto (try both "
        "when a class is rarer than data.checks.min_class_share; validation decides).",
    )
    tracking_uri: str | None = Field(
        None, description="MLflow tracking/registry URI (default: SQLite in the workspace)."
    )


class BehavioralTestSpec(Section):
    kind: Literal["perturbation", "invariance", "directional"] = Field(
        description="perturbation: small noise changes the output by at most `tolerance`; "
        "invariance: changing `feature` leaves the output unchanged; directional: raising "
        "`feature` moves the output in `direction`."
    )
    name: str | None = Field(None, description="Name in reports (default: kind and feature).")
    feature: str | None = Field(
        None,
        description="The column tested (perturbation: default every numeric feature).",
    )
    direction: Literal["up", "down"] | None = Field(
        None, description="Directional: the way the output must move when `feature` rises."
    )
    where: str | None = Field(
        None, description="Test only rows meeting this condition, e.g. `temp < 0.6`."
    )
    delta: float | None = Field(
        None, description="Directional: how much `feature` is raised (default 0.1 x its std)."
    )
    scale: float = Field(
        0.01, gt=0, le=1, description="Perturbation: noise std as a share of each column's std."
    )
    tolerance: float | None = Field(
        None,
        ge=0,
        description="Largest change (perturbation, invariance) or move the wrong way "
        "(directional) allowed per row; default 0.05 for probabilities, 5% of the outputs' std "
        "for regression, 0 for directional.",
    )
    max_failure_share: float = Field(
        0.0, ge=0, lt=1, description="Share of tested rows allowed to fail."
    )
    rows: int = Field(200, ge=1, le=100_000, description="Validation rows tested (sampled).")
    blocking: bool = Field(True, description="A failure stops registration.")

    @property
    def label(self) -> str:
        """The test's name, or one made from its kind, feature and direction."""
        if self.name:
            return self.name
        parts = [self.kind, self.feature or "numeric features", self.direction or ""]
        return " ".join(p for p in parts if p) + (f" where {self.where}" if self.where else "")


class ThresholdSpec(Section):
    rule: Literal["cost", "precision", "recall", "fixed"] = Field(
        "cost",
        description="Binary decision threshold: least expected cost from problem.costs, the "
        "lowest meeting a precision target, the highest meeting a recall target, or fixed.",
    )
    target: float | None = Field(
        None, gt=0, le=1, description="precision or recall rule: the target to meet on valid."
    )
    value: float | None = Field(None, ge=0, le=1, description="fixed rule: the threshold.")


class EnsembleSpec(Section):
    enabled: bool = Field(False, description="Try an average of the top candidates.")
    top: int = Field(3, ge=2, le=10, description="How many top candidates are averaged.")
    margin: float = Field(
        0.0,
        ge=0,
        description="Kept only when it beats the best single model on valid by this margin.",
    )


class EvaluationSpec(Section):
    slices: list[str] = Field(
        default_factory=list, description="Slice columns or expressions, e.g. `temp > 0.7`."
    )
    auto_slices: bool = Field(
        True,
        description="Search single columns and pairs of the model's inputs for the slices "
        "where the model is worst.",
    )
    min_support: int = Field(
        30, ge=1, description="Fewest rows a searched slice may hold (also min_support_share)."
    )
    min_support_share: float = Field(
        0.01, ge=0, lt=1, description="Smallest share of the rows a searched slice may hold."
    )
    max_slices: int = Field(
        10, ge=1, le=100, description="How many of the worst searched slices are reported."
    )
    learning_curve: bool = Field(
        True,
        description="Refit the chosen model on 20/40/70% of train to tell whether more data "
        "would help.",
    )
    tests: list[BehavioralTestSpec] = Field(
        default_factory=list, description="Behavioural tests run on the validation rows."
    )
    calibration: Literal["auto", "platt", "isotonic", "none"] = Field(
        "auto",
        description="Binary: calibrate probabilities on valid with the named method (auto: "
        "try both), kept only when it lowers cross-fitted valid log loss.",
    )
    threshold: ThresholdSpec = Field(
        default_factory=ThresholdSpec, description="Binary: how the decision threshold is chosen."
    )
    ensemble: EnsembleSpec = Field(
        default_factory=EnsembleSpec, description="Blend of the top candidates."
    )


class ServingSpec(Section):
    host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP server.")
    on_invalid: Literal["reject", "flag"] = Field(
        "flag",
        description="Numbers outside the training range and unseen categories: flag the "
        "instance in the prediction log and answer it (monitoring counts the flags), or "
        "reject it as invalid.",
    )
    partial: bool = Field(
        False,
        description="A request mixing valid and invalid instances: false refuses it whole "
        "(422); true answers the valid ones and gives each invalid one its problems.",
    )
    unknown_fields: Literal["ignore", "reject"] = Field(
        "ignore", description="Fields the model does not know: ignore (and count) or reject."
    )
    max_instances: int = Field(1000, ge=1, le=1_000_000, description="Instances per request.")
    max_body_bytes: int = Field(
        10_000_000, ge=1024, description="Largest request body accepted; larger gets 413."
    )
    poll_s: float = Field(
        5.0,
        ge=0,
        description="How often the server checks whether the champion alias moved; "
        "0 turns polling off (reload with POST /v1/admin/reload).",
    )
    log_flush_s: float = Field(
        1.0, gt=0, le=60, description="The prediction log makes rows durable at least this often."
    )
    batch_rows: int = Field(
        100_000, ge=1, description="Rows per chunk in batch scoring (`mlsd predict`)."
    )


class RolloutSpec(Section):
    strategy: Literal["direct", "shadow", "canary", "ab", "bandit"] = Field(
        "direct",
        description="How a new model takes traffic: direct (the champion alias moves; the "
        "server follows). shadow, canary, ab and bandit: not available yet.",
    )

    @field_validator("strategy")
    @classmethod
    def _available(cls, value: str) -> str:
        if value != "direct":
            raise not_available_yet(value, "direct", "step 8, [rollout]")
        return value

    steps: list[int] = Field(
        default_factory=lambda: [10, 50, 100], description="Canary traffic percentages."
    )


DriftMethod = Literal["auto", "ks", "wasserstein", "psi", "chi2", "jensen_shannon"]


class DriftSpec(Section):
    """Drift tests of each window against the training data's profile (mlsd.monitoring.drift).

    A column drifts when its corrected p-value < alpha AND its distance >= the method's
    threshold: the test ignores noise in small windows, the threshold ignores trivial shifts
    in huge ones.
    """

    numeric: DriftMethod = Field(
        "auto",
        description="Numeric method: auto (ks; chi2 for discrete columns), ks (KS test, "
        "distance D), wasserstein (KS test, Wasserstein / reference std), psi (chi-square on "
        "10 quantile bins, distance PSI), chi2 or jensen_shannon (chi-square on percentile "
        "bins, Jensen-Shannon distance).",
    )
    categorical: Literal["auto", "chi2", "jensen_shannon", "psi"] = Field(
        "auto",
        description="Categorical and boolean method: auto (chi2), chi2 (chi-square test, "
        "Jensen-Shannon distance), jensen_shannon (same, customary 0.1 threshold), psi.",
    )
    alpha: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="Significance level for the whole window: with no drift, at most this "
        "share of windows alerts.",
    )
    correction: Literal["bh", "bonferroni"] = Field(
        "bh",
        description="Correction for testing many columns: bh (Benjamini-Hochberg, more power "
        "when several drift) or bonferroni.",
    )
    thresholds: dict[
        Literal["ks", "wasserstein", "psi", "chi2", "jensen_shannon"], Annotated[float, Field(ge=0)]
    ] = Field(
        default_factory=dict,
        description="Minimum distance per method for an alert; defaults ks 0.05 (about a "
        "0.125 sd shift; ks also alerts at the wasserstein threshold), wasserstein 0.1 (sd), "
        "psi 0.1, chi2 0.05 (Jensen-Shannon), jensen_shannon 0.1.",
    )
    columns: dict[str, DriftMethod] = Field(
        default_factory=dict, description="Method per column, e.g. {temp: wasserstein}."
    )


class RowWindow(Section):
    rows: int = Field(
        ge=1,
        description="Predictions per monitoring window, counted back "
        "from the latest so the latest window is always full.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `window: 1000` means 1000 rows
        return {"rows": data} if isinstance(data, int) and not isinstance(data, bool) else data


class QualitySpec(Section):
    missing_increase: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Alert when a field's missing rate exceeds its training "
        "rate by more than this (absolute share of rows).",
    )
    out_of_range: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Alert when more than this share of a numeric field's "
        "values is outside its training range.",
    )
    unseen: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Alert when more than this share of a categorical "
        "field's values is a category never seen in training.",
    )
    rejected: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Alert when the server rejected more than this share "
        "of the instances it was sent (validation failures).",
    )


class MonitoringSpec(Section):
    window: Annotated[
        Annotated[str, AfterValidator(_duration), Tag("duration")]
        | Annotated[RowWindow, Tag("rows")],
        Discriminator(lambda v: "duration" if isinstance(v, str) else "rows"),
    ] = Field(
        "1d",
        description="A monitoring window: a duration of serving time (1d, 6h) or a number "
        "of predictions ({rows: 1000}).",
    )
    min_rows: int = Field(
        100,
        ge=1,
        description="Windows with fewer predictions (or labels) than this are "
        "reported but not tested: too few rows for a test to mean anything.",
    )
    max_age: Duration = Field("30d", description="A model older than this is stale.")
    drift: DriftSpec = Field(default_factory=DriftSpec, description="Drift tests.")
    quality: QualitySpec = Field(
        default_factory=QualitySpec, description="Data quality thresholds at serving."
    )
    max_metric_drop: float = Field(
        0.1,
        ge=0,
        description="Alert when the realised primary metric is worse than the "
        "package's offline test score by more than this share of it (0.1 = 10%).",
    )
    webhook: str | None = Field(
        None, description="URL that receives each new alert as a JSON POST."
    )
    webhook_timeout_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="How long a webhook POST may take before it is reported as failed.",
    )
    log_to_mlflow: bool = Field(
        True, description="Log each `mlsd monitor` report as a run of the system's experiment."
    )

    @property
    def window_rows(self) -> int | None:
        """Predictions per window when windows are counted in rows, else None."""
        return self.window.rows if isinstance(self.window, RowWindow) else None

    @property
    def window_seconds(self) -> float | None:
        """Window length in seconds when windows are durations, else None."""
        return None if isinstance(self.window, RowWindow) else parse_duration(self.window)


TRIGGERS = ("drift", "performance", "schedule", "new_labels")  # retraining.triggers names


def _trigger(entry: Any) -> Any:
    """A trigger is a name (drift, performance) or a one-key mapping ({schedule: 7d},
    {new_labels: 2000}); misspelt names get a did-you-mean."""
    if isinstance(entry, str):
        name, value = entry, None
    elif isinstance(entry, dict) and len(entry) == 1:
        name, value = next(iter(entry.items()))
    else:
        raise ValueError(
            f"a trigger is a name or a one-key mapping such as {{schedule: 7d}}, not {entry!r}"
        )
    if name not in TRIGGERS:
        raise ValueError(
            f"unknown trigger {name!r}{did_you_mean(name, TRIGGERS, cutoff=0.5)} (triggers: drift, performance, "
            "{schedule: 7d}, {new_labels: 2000})"
        )
    if name in ("drift", "performance"):
        if value not in (None, True):
            raise ValueError(f"trigger {name!r} takes no value; write `- {name}`")
        return name
    if name == "schedule":
        if value is None:
            raise ValueError("trigger 'schedule' needs a model age, e.g. {schedule: 7d}")
        parse_duration(value)
        return {"schedule": str(value)}
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"trigger 'new_labels' needs a positive number of rows, e.g. {{new_labels: 2000}} "
            f"(given {value!r})"
        )
    return {"new_labels": value}


class RetrainWindow(Section):
    """Which rows a retrain learns from: all of them, the most recent span of time, or the
    most recent number of rows."""

    expanding: bool | None = Field(None, description="true: every row (the default).")
    sliding: Duration | None = Field(
        None, description="Only rows from the last span of time, e.g. 90d."
    )
    rows: int | None = Field(None, ge=1, description="Only the most recent N rows.")

    @model_validator(mode="after")
    def _one_of(self) -> RetrainWindow:
        chosen = [k for k in ("sliding", "rows") if getattr(self, k) is not None]
        if len(chosen) > 1 or (chosen and self.expanding):
            raise ValueError(
                "a retraining window is one of {expanding: true}, {sliding: 90d}, {rows: N}"
            )
        return self

    @property
    def kind(self) -> str:
        """expanding, sliding or rows."""
        return "sliding" if self.sliding else "rows" if self.rows else "expanding"


class RetrainHoldout(Section):
    """The fresh holdout: the most recent labelled log rows, kept out of the challenger's
    training, on which champion and challenger are compared."""

    share: float = Field(
        0.2, gt=0, lt=1, description="Share of the fresh labelled log rows held out."
    )
    rows: int | None = Field(None, ge=1, description="At most this many rows (default: no cap).")


class RetrainingSpec(Section):
    triggers: list[Annotated[Any, AfterValidator(_trigger)]] = Field(
        default_factory=list, description="drift, performance, {schedule: 7d}, {new_labels: 2000}."
    )
    beat_champion_by: float = Field(
        0.0, ge=0, description="Margin a challenger needs over the champion."
    )
    window: RetrainWindow = Field(
        default_factory=RetrainWindow,
        description="Rows to learn from: {expanding: true} (default), {sliding: 90d}, {rows: N}.",
    )
    holdout: RetrainHoldout = Field(
        default_factory=RetrainHoldout,
        description="The fresh holdout champion and challenger are compared on.",
    )
    min_new_labels: int = Field(
        50,
        ge=1,
        description="Labelled log rows newer than the champion a retrain needs (the fresh "
        "holdout is cut from them).",
    )


class SystemSpec(Section):
    """The whole ``system.yaml``."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=100,
        description="System name: letters, digits, '-', '_' and '.'.",
    )
    description: str = Field("", description="What the system is for.")
    seed: int = Field(42, ge=0, description="Seed of every random choice (splits, models).")
    workspace: str | None = Field(
        None,
        description="Workspace folder (default: .mlsd beside system.yaml; MLSD_HOME "
        "overrides both).",
    )
    problem: ProblemSpec = Field(description="Step 1: the problem.")
    metrics: MetricsSpec = Field(default_factory=MetricsSpec, description="Step 2: metrics.")
    architecture: ArchitectureSpec = Field(
        default_factory=ArchitectureSpec, description="Step 3: architecture."
    )
    data: DataSpec = Field(description="Step 4: data.")
    features: FeaturesSpec = Field(default_factory=FeaturesSpec, description="Step 5: features.")
    models: ModelsSpec = Field(default_factory=ModelsSpec, description="Step 6: models.")
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec, description="Step 6: offline evaluation."
    )
    serving: ServingSpec = Field(default_factory=ServingSpec, description="Step 7: serving.")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="Step 8: rollout.")
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec, description="Step 9: monitoring."
    )
    retraining: RetrainingSpec = Field(
        default_factory=RetrainingSpec, description="Step 9: retraining."
    )

    _path: Path | None = PrivateAttr(None)

    @property
    def path(self) -> Path | None:
        """The file this spec was loaded from, if any."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the spec are resolved against."""
        return self._path.parent if self._path else Path.cwd()

    def resolve(self, relative: str) -> Path:
        """A path from the spec, made absolute against the spec's folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def split_method(self) -> str:
        """The split method with ``auto`` resolved."""
        method = self.data.split.method
        if method != "auto":
            return method
        if self.problem.time:
            return "time"
        return "stratified" if self.problem.task in ("binary", "multiclass") else "random"

    @property
    def split_group(self) -> str | None:
        """Column a group split keeps together."""
        return self.data.split.group or self.problem.id


# --- loading -------------------------------------------------------------------------------


Location = tuple[int, int]  # (line of the key, line of the value), 1-based


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of keeping the last silently."""


def _index_lines(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict:
    """Map every key path in a composed YAML document to the lines of its key and value."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey((*path, key), line, seen[key])
            seen[key] = line
            out[(*path, key)] = (line, value_node.start_mark.line + 1)
            _index_lines(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            line = item.start_mark.line + 1
            out[(*path, i)] = (line, line)
            _index_lines(item, (*path, i), out)
    return out


class _DuplicateKey(Exception):
    def __init__(self, path: tuple, line: int, first: int):
        self.path, self.line, self.first = path, line, first


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
    # pydantic adds the tags of function validators ('function-after[...]') to locations
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p))
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
    return {"line": _locate(lines, loc), "key": _dotted(loc), "problem": problem, "hint": hint}


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


def parse_spec(text: str, file: str = "system.yaml") -> SystemSpec:
    """Validate YAML text as a SystemSpec; every problem cites ``file``, line and key."""
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        lines = _index_lines(node) if node is not None else {}
        data = yaml.load(text, Loader=_UniqueKeyLoader)
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


def _consistency(spec: SystemSpec) -> list[tuple[tuple, str, str]]:
    """Checks that span sections (they need no data; data checks live in mlsd.data.validate)."""
    found = []
    target = spec.problem.target
    if target in spec.features.exclude:
        found.append(
            (
                (("features", "exclude")),
                f"the target '{target}' is listed",
                "the target is never a feature already; remove it from the list",
            )
        )
    if spec.features.include and target in spec.features.include:
        found.append(
            (
                (("features", "include")),
                f"the target '{target}' is listed",
                "remove the target from features.include",
            )
        )
    if spec.problem.positive_class is not None and spec.problem.task != "binary":
        found.append(
            (
                (("problem", "positive_class")),
                f"set for a {spec.problem.task} task",
                "remove it, or set problem.task: binary",
            )
        )
    if spec.split_method == "time" and not spec.problem.time:
        found.append(
            (
                (("data", "split", "method")),
                "a time split needs event-time columns",
                "set problem.time to the column(s) that order the rows",
            )
        )
    found += _metric_problems(spec)
    found += _evaluation_problems(spec)
    if spec.split_method == "group" and not spec.split_group:
        found.append(
            (
                (("data", "split", "method")),
                "a group split needs a group column",
                "set data.split.group or problem.id",
            )
        )
    return found


def _evaluation_problems(spec: SystemSpec) -> list[tuple[tuple, str, str]]:
    """Behavioural tests and the threshold policy, checked against the rest of the spec."""
    found = []
    ev = spec.evaluation
    for i, test in enumerate(ev.tests):
        path = ("evaluation", "tests", i)
        if test.kind in ("invariance", "directional") and not test.feature:
            found.append(
                (path, f"{test.kind} tests need a feature", "add feature: COLUMN to the test")
            )
        if test.kind == "directional" and not test.direction:
            found.append(
                (path, "a directional test needs a direction", "add direction: up (or down)")
            )
        if test.kind != "directional" and test.direction:
            found.append((path, f"direction is set on the {test.kind} test", "remove direction"))
        if test.feature and test.feature == spec.problem.target:
            found.append(
                (path, f"the test names the target {test.feature!r}", "test an input feature")
            )
        if test.kind != "invariance" and test.feature in spec.features.exclude:
            found.append(
                (
                    path,
                    f"{test.feature!r} is in features.exclude, so moving it cannot move the output",
                    "test a feature the model uses, or make it an invariance test",
                )
            )
    rule = ev.threshold.rule
    if rule != "cost" and spec.problem.task != "binary":
        found.append(
            (
                ("evaluation", "threshold", "rule"),
                f"a decision threshold is for binary tasks; this one is {spec.problem.task}",
                "remove evaluation.threshold",
            )
        )
    if rule in ("precision", "recall") and ev.threshold.target is None:
        found.append(
            (
                ("evaluation", "threshold", "target"),
                f"rule {rule} needs a target",
                f"add target: 0.8 (the {rule} to reach on valid)",
            )
        )
    if rule == "fixed" and ev.threshold.value is None:
        found.append(
            (
                ("evaluation", "threshold", "value"),
                "rule fixed needs a value",
                "add value: 0.5",
            )
        )
    return found


def _metric_problems(spec: SystemSpec) -> list[tuple[tuple, str, str]]:
    """Metric names in the spec that do not exist or do not fit the task."""
    from mlsd.errors import MlsdError
    from mlsd.evaluation.metrics import get_metric  # numpy only: cheap to import

    named = [(("metrics", "primary"), spec.metrics.primary)] if spec.metrics.primary else []
    named += [(("metrics", "guardrails", name), name) for name in spec.metrics.guardrails]
    found = []
    for path, name in named:
        try:
            get_metric(name, spec.problem.task)
        except MlsdError as exc:
            found.append((path, exc.message, exc.hint or ""))
    return found


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
    spec = parse_spec(path.read_text(encoding="utf-8"), file=str(path))
    spec._path = path.resolve()
    return spec


def json_schema() -> dict:
    """JSON schema of system.yaml, with every field's type, default, range and description."""
    return SystemSpec.model_json_schema()
