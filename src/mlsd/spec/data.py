"""Steps 4-5 of system.yaml: where the rows come from, their schema, split and checks, and
the features made from them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from mlsd.spec.base import ColumnType, DatetimePart, Duration, Scalar, Section, _listify

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
    method: Literal[
        "auto", "random", "stratified", "time", "group", "per_user", "per_user_time"
    ] = Field(
        "auto",
        description="auto: time when problem.time is set, stratified for "
        "classification, random otherwise. A funnel: per_user (each user's interactions "
        "at random), per_user_time (each user's last ones held out; auto with "
        "problem.time) or time (the newest interactions of all held out: users first seen "
        "after the cut are new users).",
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
        "or accuracy; for ranking, the share of the NDCG gap between a random and the ideal "
        "order it closes) is reported as strong (a warning). Errors are kept for columns that "
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
    items: SourceSpec | None = Field(
        None,
        description="Funnel: a table of items, one row per item keyed by the problem.target "
        "column (for rules and validation).",
    )
    users: SourceSpec | None = Field(
        None, description="Funnel: a table of users, one row per user keyed by problem.id."
    )
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
