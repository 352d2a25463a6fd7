"""Step 9 of system.yaml: monitoring windows, drift and quality thresholds, and when and
on what rows the system retrains."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from mlsd.errors import did_you_mean
from mlsd.spec.base import Duration, Section, _duration, parse_duration

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
    promote: Literal["direct", "rollout"] = Field(
        "direct",
        description="A challenger that passed the gate: becomes champion at once (direct), "
        "or is handed to the rollout strategy (shadow, canary, ab, bandit) on live traffic.",
    )
    min_new_labels: int = Field(
        50,
        ge=1,
        description="Labelled log rows newer than the champion a retrain needs (the fresh "
        "holdout is cut from them).",
    )
