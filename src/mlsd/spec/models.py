"""Step 6 of system.yaml: the candidate models, their tuning and gate, and the offline
evaluation (slices, behavioural tests, calibration, threshold, ensemble)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from mlsd.model_params import FAMILIES, NAMES
from mlsd.spec.base import Section

Family = Literal[NAMES]  # the model families of mlsd.model_params


class TuningSpec(Section):
    budget_s: float = Field(
        0.0,
        ge=0,
        le=86400,
        description="Time budget in seconds of the whole `mlsd train` (loading and what follows "
        "the search included; the candidates share what is left, each an equal share of "
        "the rest); 0 = default parameters.",
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
    candidates: list[Family] = Field(
        default_factory=lambda: list(NAMES),
        min_length=1,
        description="Model families to try.",
    )
    params: dict[Family, dict[str, Any]] = Field(
        default_factory=dict,
        description="Parameters fixed per family, e.g. `lightgbm: {num_leaves: 15}`; tuning "
        "searches only the others.",
        # each family's parameter table: type, default, range and description per parameter
        json_schema_extra={
            "properties": {name: family.json_schema() for name, family in FAMILIES.items()},
            "additionalProperties": False,
        },
    )
    baselines: BaselinesSpec = Field(default_factory=BaselinesSpec, description="Baselines.")
    tuning: TuningSpec = Field(default_factory=TuningSpec, description="Hyper-parameter search.")
    gate: ModelGateSpec = Field(default_factory=ModelGateSpec, description="Registration gate.")
    selection: Literal["auto", "holdout", "cv"] = Field(
        "auto",
        description="How candidates are tuned and chosen: on the validation split (holdout), "
        "or by k-fold cross-validation over train + valid (cv); auto: cv when the validation "
        "split is too small to trust (under 1,000 rows, or under 50 of a class) and the "
        "split is random or stratified, else holdout. After cross-validation the chosen "
        "settings are fitted on every row of train + valid.",
    )
    folds: int = Field(5, ge=2, le=20, description="Folds of cross-validation.")
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
    enabled: bool = Field(
        True,
        description="Try a weighted blend of the top candidates of every family (weights by "
        "greedy selection on the selection predictions).",
    )
    top: int = Field(3, ge=2, le=10, description="How many top candidates may be blended.")
    margin: float = Field(
        0.0,
        ge=0,
        description="Kept only when it beats the best single model on the selection rows by "
        "this margin and beyond noise (its paired bootstrap's 90% lower bound above 0).",
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
        30,
        ge=1,
        description="Fewest rows (for ranking: groups) a searched slice may hold (also "
        "min_support_share).",
    )
    min_support_share: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="Smallest share of the rows (for ranking: groups) a searched slice may hold.",
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
