"""How candidates are judged before the test split: on the validation split, or by k-fold
cross-validation over train + valid when the validation split is too small to trust.

One small validation split decides everything on a small table (85 rows on breast cancer):
which family, which parameters, which threshold. Cross-validation scores every row once,
out of fold, so the choice rests on all of train + valid. The rule (``models.selection:
auto``): cross-validate when the validation split holds fewer than :data:`MIN_VALID_ROWS`
rows, or fewer than :data:`MIN_VALID_CLASS` rows of a class, and the split is random or
stratified (a time or group split keeps its holdout: folds would mix what it keeps apart);
repeat the folds with another shuffle when train + valid hold fewer than
:data:`REPEAT_BELOW` rows. Ranking keeps its holdout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlsd.models.base import TaskInfo

MIN_VALID_ROWS = 1000
MIN_VALID_CLASS = 50
REPEAT_BELOW = 1000
HOLDOUT, CV = "holdout", "cv"
Folds = list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Selection:
    """The scheme: ``holdout`` (the validation split) or ``cv`` (``folds`` x ``repeats``
    over train + valid), and why."""

    method: str
    folds: int = 0
    repeats: int = 1
    reason: str = ""

    @property
    def cv(self) -> bool:
        """Whether candidates are cross-validated."""
        return self.method == CV

    def describe(self) -> str:
        """How a person reads it, e.g. "5-fold cross-validation over train + valid"."""
        if not self.cv:
            return "the validation split"
        again = f", repeated {self.repeats} times" if self.repeats > 1 else ""
        return f"{self.folds}-fold cross-validation over train + valid{again}"

    def to_dict(self) -> dict:
        """JSON form, for the leaderboard and the run."""
        return {
            "method": self.method,
            "folds": self.folds,
            "repeats": self.repeats,
            "described": self.describe(),
            "reason": self.reason,
        }


def choose_selection(
    asked: str,
    folds: int,
    split_method: str,
    task: TaskInfo,
    y_train: np.ndarray,
    y_valid: np.ndarray,
) -> Selection:
    """The scheme for ``models.selection`` = ``asked`` (auto, holdout or cv)."""
    n = len(y_train) + len(y_valid)
    repeats = 2 if n < REPEAT_BELOW else 1
    if task.definition.grouped:
        return Selection(
            HOLDOUT, reason="ranking is judged on whole groups of the validation split"
        )
    if asked == HOLDOUT:
        return Selection(HOLDOUT, reason="models.selection: holdout")
    if asked == CV:
        return Selection(CV, folds, repeats, "models.selection: cv")
    if split_method not in ("random", "stratified"):
        return Selection(HOLDOUT, reason=f"a {split_method} split keeps its validation rows apart")
    if len(y_valid) < MIN_VALID_ROWS:
        why = f"the validation split has {len(y_valid)} rows (under {MIN_VALID_ROWS})"
        return Selection(CV, folds, repeats, why)
    if task.is_classification:
        counts = np.bincount(y_valid.astype(np.int64), minlength=task.n_classes)
        if counts.min() < MIN_VALID_CLASS:
            why = (
                f"the validation split has {counts.min()} rows of a class (under {MIN_VALID_CLASS})"
            )
            return Selection(CV, folds, repeats, why)
    return Selection(
        HOLDOUT, reason=f"the validation split has {len(y_valid)} rows, enough to choose on"
    )


def fold_indices(y: np.ndarray, task: TaskInfo, selection: Selection, seed: int) -> Folds:
    """(fit rows, held-out rows) of every fold of every repeat: stratified by class for
    classification, shuffled with ``seed`` (a new shuffle per repeat)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    out: Folds = []
    for repeat in range(selection.repeats):
        if task.is_classification and np.bincount(y.astype(np.int64)).min() >= selection.folds:
            splitter = StratifiedKFold(selection.folds, shuffle=True, random_state=seed + repeat)
        else:
            splitter = KFold(selection.folds, shuffle=True, random_state=seed + repeat)
        out += [(a, b) for a, b in splitter.split(np.zeros(len(y)), y)]
    return out
