"""What is decided about the chosen model on the validation split before test: its
calibration map and decision threshold (thresholded tasks), and its behavioural tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlsd.models.calibrator import Calibrator
from mlsd.models.candidates import Candidate, TrainingData
from mlsd.spec import SystemSpec


@dataclass
class Evaluation:
    """The chosen model judged on valid: what its package applies to the model's outputs,
    and the results reported (None where the task or the spec asks for none)."""

    calibrator: Calibrator | None = None  # kept only when it lowers valid log loss
    threshold: float = 0.5  # chosen by the spec's rule when the task is thresholded
    calibration: dict[str, Any] | None = None  # the choice, reliability and confidence
    threshold_choice: dict[str, Any] | None = None  # the rule, its cost curve and outcome
    behavioral: list[dict[str, Any]] | None = None  # one result per test of the spec

    def calibrated(self, pred: np.ndarray) -> np.ndarray:
        """``pred`` as the package answers it: through the calibrator when one was kept."""
        return pred if self.calibrator is None else self.calibrator.apply(pred)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, the start of ``TrainResult.evaluation``."""
        out = {
            "calibration": self.calibration,
            "threshold": self.threshold_choice,
            "behavioral": self.behavioral,
        }
        return {k: v for k, v in out.items() if v is not None}


def evaluate(spec: SystemSpec, data: TrainingData, chosen: Candidate) -> Evaluation:
    """Calibrate the chosen model and choose its decision threshold on its selection
    predictions (the validation split's, or out of fold), run the behavioural tests on the
    validation split."""
    from mlsd.evaluation import behavioral, calibration, thresholds

    out = Evaluation()
    task = data.task.definition
    raw = np.asarray(chosen.valid_pred)  # out of sample: valid's, or out of fold
    y = data.y_selection
    if task.thresholded:
        out.calibrator, report = calibration.choose(
            y, raw, spec.evaluation.calibration, seed=spec.seed
        )
        p = out.calibrated(raw)
        policy = spec.evaluation.threshold
        out.threshold_choice = thresholds.choose(
            y,
            p,
            costs=spec.problem.costs,
            rule=policy.rule,
            target=policy.target,
            value=policy.value,
        )
        out.threshold = out.threshold_choice["threshold"]
        out.calibration = {
            **report,
            "reliability_before": calibration.reliability(y, raw),
            "reliability": calibration.reliability(y, p),
            "confidence": calibration.confidence(y, p, out.threshold),
        }
    elif task.classification:
        out.calibration = {
            "kept": "none",
            "reason": f"{task.name} probabilities are not calibrated (binary tasks only)",
            "reliability": calibration.reliability(y, raw),
            "confidence": calibration.confidence(y, raw),
        }
    if spec.evaluation.tests:

        def predict(frame: pd.DataFrame) -> np.ndarray:
            return out.calibrated(chosen.predict(frame, data.columns))

        out.behavioral = behavioral.run(
            spec.evaluation.tests,
            predict,
            data.parts["valid"],
            data.columns,
            task.name,
            seed=spec.seed,
        )
    return out
