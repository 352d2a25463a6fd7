"""``make demo``: mlsd end to end on the bundled real data, telling what it does.

Today that is steps 1, 2, 4, 5 and 6 of the design: load each example's spec, snapshot and
validate its data (bikeshare shows leakage caught, then excluded), split it, fit the
featurizer on the training split, then train baselines and candidates, pick one on
validation, score it once on test and register it if it beats the baselines. Later steps
(serving, monitoring, retraining) extend this story.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mlsd.data import load_dataset, split_dataset, validate
from mlsd.data.validate import validate_dataset
from mlsd.features import Featurizer, save, select_features
from mlsd.models.train import train
from mlsd.spec import load_spec
from mlsd.workspace import Workspace, write_json

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _say(text: str = "") -> None:
    print(text, flush=True)


def _findings(report) -> None:
    for a in report.anomalies:
        tag = "ack" if a.acknowledged else a.severity
        _say(f"      {tag:<8}{a.check:<18}{a.column or '-':<12}{a.message[:90]}")


def bikeshare() -> None:
    """Leakage caught and excluded, a time split with seasonal drift, features fitted."""
    spec = load_spec(EXAMPLES / "bikeshare" / "system.yaml")
    ws = Workspace.for_spec(spec)
    _say(f"== {spec.name}: {spec.problem.objective}")
    _say(
        f"   step 1  {spec.problem.task} on '{spec.problem.target}', ordered by "
        f"{', '.join(spec.problem.time)}, latency budget {spec.problem.latency_budget_ms:g} ms"
    )

    naive = spec.model_copy(deep=True)
    naive.features.exclude = [c for c in spec.features.exclude if c not in ("casual", "registered")]
    dataset = load_dataset(naive, ws)
    report = validate_dataset(naive, dataset)
    path = write_json(ws.reports / "validation-without-exclusions.json", report.to_dict())
    _say(
        f"   step 4  snapshot {dataset.snapshot_id}: {len(dataset.frame):,} rows; "
        "validating WITHOUT excluding casual/registered:"
    )
    _findings(report)
    _say(f"      → {'passed' if report.passed else 'BLOCKED'} ({path})")

    report = validate(spec, ws)
    _say(f"   step 4  with the committed spec (features.exclude: {spec.features.exclude}):")
    _findings(report)
    counts = report.split["counts"]
    _say(
        f"      → {'passed' if report.passed else 'BLOCKED'}; time split train {counts['train']:,}"
        f" · valid {counts['valid']:,} · test {counts['test']:,} "
        f"({ws.reports / 'validation.json'})"
    )
    _fit_features(spec, ws)
    _train(spec, ws)


def caravan() -> None:
    """Class imbalance warned about, a stratified split that keeps the 6% positives."""
    spec = load_spec(EXAMPLES / "caravan" / "system.yaml")
    ws = Workspace.for_spec(spec)
    _say(f"== {spec.name}: {spec.problem.objective}")
    _say(
        f"   step 1  {spec.problem.task} on '{spec.problem.target}' (positive "
        f"{spec.problem.positive_class!r}); a false negative costs "
        f"{spec.problem.costs.false_negative:g}x a false positive"
    )
    report = validate(spec, ws)
    _say(
        f"   step 4  snapshot {report.snapshot}: {report.n_rows:,} rows x {report.n_columns} "
        "columns:"
    )
    _findings(report)
    shares = report.split["stratified"]["class_shares"]
    _say(
        f"      → {'passed' if report.passed else 'BLOCKED'}; stratified split, share of "
        "'Yes' " + " · ".join(f"{k} {shares[k]['Yes']:.1%}" for k in ("train", "valid", "test"))
    )
    _fit_features(spec, ws)
    _train(spec, ws)


def _fit_features(spec, ws: Workspace) -> None:
    dataset = load_dataset(spec, ws)
    labels, _ = split_dataset(dataset, spec)
    columns = select_features(spec, dataset.schema.types)
    rows = dataset.frame[labels == 0]
    start = time.perf_counter()
    for encoding in ("codes", "onehot"):
        fitted = Featurizer(columns, spec.features, encoding=encoding).fit(
            {c: rows[c].array for c in columns}
        )
        matrix = fitted.transform({c: dataset.frame[c].array for c in columns})
        path = save(fitted, ws.reports / f"featurizer-{encoding}.json")
        _say(
            f"   step 5  {encoding:<6} featurizer fitted on {len(rows):,} train rows: "
            f"{len(columns)} columns → {matrix.shape[1]} features ({path})"
        )
    _say(f"           ({time.perf_counter() - start:.2f} s for both)")


def _train(spec, ws: Workspace) -> None:
    _say("   step 6  baselines first, then candidates chosen on valid, test scored once:")
    result = train(spec, ws, progress=False)
    for line in result.summary_lines():
        _say(f"      {line}")


def main() -> int:
    """Run the demo on both examples."""
    start = time.perf_counter()
    bikeshare()
    _say()
    caravan()
    _say()
    _say(
        f"done in {time.perf_counter() - start:.1f} s. Reports: examples/<name>/.mlsd/reports/<system>/; "
        "runs and versions: `mlflow ui --backend-store-uri sqlite:///examples/<name>/.mlsd/"
        "mlflow.db`. Serving, monitoring and retraining land in later releases."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
