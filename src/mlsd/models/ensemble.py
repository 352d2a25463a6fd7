"""Ensembles: the average of already-fitted candidates, kept only when it beats the best single
model on the validation split by the spec's margin (``evaluation.ensemble``).

A package has one featurizer, so the members are the top candidates that share the chosen
model's featurizer (the same encoding: LightGBM variants together, linear variants together).
The ensemble is saved as its members' own native files, one sub-folder each (LightGBM text,
coefficients JSON), never a pickle, and loaded through the model families.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.models.base import FitData, Model, ModelError, TaskInfo, read_header

MEMBER_DIR = "member_{}"


class EnsembleModel(Model):
    """The plain average of fitted members' predictions (probabilities, or values)."""

    family = "ensemble"

    def __init__(
        self,
        task: TaskInfo,
        params: dict[str, Any] | None = None,
        seed: int = 0,
        members: Sequence[Model] = (),
    ):
        super().__init__(task, params, seed)
        self.members = list(members)
        if self.members:
            encodings = {m.encoding for m in self.members}
            if len(encodings) > 1:
                raise ModelError(
                    f"ensemble members want different feature encodings {sorted(encodings)}",
                    hint="average members that share one featurizer",
                )
            self.encoding = self.members[0].encoding

    def fit(self, data: FitData) -> EnsembleModel:
        """Fit every member on ``data`` (training normally averages members fitted already)."""
        for member in self.members:
            member.fit(data)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The mean of the members' predictions, in the task's shape."""
        if not self.members:
            raise ModelError("the ensemble has no members", hint="build it from fitted models")
        total = np.asarray(self.members[0].predict(X), dtype=np.float64).copy()
        for member in self.members[1:]:
            total += np.asarray(member.predict(X), dtype=np.float64)
        return total / len(self.members)

    def save(self, folder: Path) -> list[str]:
        """Each member in ``member_<i>/`` in its own format, and ``model.json`` naming them."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for i, member in enumerate(self.members):
            sub = folder / MEMBER_DIR.format(i)
            sub.mkdir(exist_ok=True)
            written += [f"{sub.name}/{name}" for name in member.save(sub)]
        self._write_header(folder, members=[m.family for m in self.members])
        return [*written, "model.json"]

    @classmethod
    def load(cls, folder: Path) -> EnsembleModel:
        """Read an ensemble written by :meth:`save`, loading each member by its family."""
        from mlsd.models.families import load_model

        folder = Path(folder)
        header = read_header(folder, cls.family)
        members = [load_model(folder / MEMBER_DIR.format(i)) for i in range(len(header["members"]))]
        return cls(TaskInfo(**header["task"]), header.get("params"), header["seed"], members)

    def describe(self) -> dict[str, Any]:
        """Family, the members' names and families."""
        return {
            "family": self.family,
            "params": self.params,
            "members": [m.describe() for m in self.members],
        }


def average(members: Sequence[Model], names: Sequence[str], task: TaskInfo) -> EnsembleModel:
    """An ensemble averaging ``members`` (fitted), called ``names`` in reports."""
    return EnsembleModel(task, {"method": "average", "members": list(names)}, 0, members)


def members_for(fitted: Sequence[dict], best: dict, top: int, key) -> list[dict]:
    """The best ``top`` candidates by ``key`` (higher is better) that share ``best``'s
    featurizer, ``best`` first."""
    same = [f for f in fitted if f["featurizer"] is best["featurizer"] and f is not best]
    return [best, *sorted(same, key=key, reverse=True)][:top]
