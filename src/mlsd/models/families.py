"""The model classes by family name: make a model for a spec's ``models.candidates`` entry, or
load any saved model by the family written in its ``model.json``; and the ensemble, an average
of fitted models of these families, saved as its members' own files and loaded through them.

The names and parameter tables are declared in :mod:`mlsd.model_params`; this module only maps
each declared name to its class. The family modules import their heavy libraries
(scikit-learn, lightgbm) only inside fit, so importing this module is cheap and loading a
linear model never touches sklearn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.errors import did_you_mean
from mlsd.models.base import FitData, Model, ModelError, TaskInfo, read_header
from mlsd.models.forest import RandomForestModel
from mlsd.models.gbdt import GBDTModel
from mlsd.models.linear import LinearModel

FAMILIES: dict[str, type[Model]] = {
    cls.family: cls for cls in (LinearModel, GBDTModel, RandomForestModel)
}
MEMBER_DIR = "member_{}"


def family_class(family: str) -> type[Model]:
    """The Model subclass of ``family``; unknown names are a ModelError with a did-you-mean."""
    try:
        return FAMILIES[family]
    except (KeyError, TypeError):
        raise ModelError(
            f"unknown model family {family!r}{did_you_mean(family, FAMILIES)}",
            hint=f"use one of: {', '.join(FAMILIES)} (models.candidates in system.yaml)",
        ) from None


def make_model(
    family: str, task: TaskInfo, params: dict[str, Any] | None = None, seed: int = 0
) -> Model:
    """A new, unfitted model of ``family``."""
    return family_class(family)(task, params, seed)


def load_model(folder: Path) -> Model:
    """Load a saved model of any family, or an ensemble of them (read from its ``model.json``)."""
    folder = Path(folder)
    family = read_header(folder).get("family")
    if family == EnsembleModel.family:
        return EnsembleModel.load(folder)
    if family not in FAMILIES:
        raise ModelError(
            f"{folder} holds a model of unknown family {family!r}",
            hint=f"this mlsd knows {', '.join(FAMILIES)}; re-train with one of them or "
            "upgrade mlsd",
        )
    return FAMILIES[family].load(folder)


class EnsembleModel(Model):
    """A weighted average of fitted members' predictions (probabilities, or values).

    ``params``: ``members`` (names for reports), ``weights`` (default equal) and ``spans``:
    each member's columns [start, stop) of the feature matrix, when the members read
    different featurizers stacked side by side (:mod:`mlsd.features.stacked`); without
    spans every member reads the whole matrix, so all must want one encoding."""

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
        n = len(self.members)
        self.weights = np.asarray(self.params.get("weights") or [1.0] * n, dtype=np.float64)
        self.spans = self.params.get("spans")
        spans = n if self.spans is None else len(self.spans)
        if n and (len(self.weights) != n or spans != n):
            raise ModelError(
                f"an ensemble of {n} members has {len(self.weights)} weights and "
                f"{len(self.spans or [])} spans",
                hint="give one weight and one span per member",
            )
        if self.members and self.spans is None:
            encodings = {m.encoding for m in self.members}
            if len(encodings) > 1:
                raise ModelError(
                    f"ensemble members want different feature encodings {sorted(encodings)}",
                    hint="average members that share one featurizer, or give their spans",
                )
            self.encoding = self.members[0].encoding

    def columns(self, i: int) -> slice:
        """The feature-matrix columns member ``i`` reads."""
        if self.spans is None:
            return slice(None)
        start, stop = self.spans[i]
        return slice(int(start), int(stop))

    def fit(self, data: FitData) -> EnsembleModel:
        """Fit every member on ``data`` (training normally averages members fitted already)."""
        for member in self.members:
            member.fit(data)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The weighted mean of the members' predictions, in the task's shape."""
        if not self.members:
            raise ModelError("the ensemble has no members", hint="build it from fitted models")
        total = None
        for i, (member, weight) in enumerate(zip(self.members, self.weights, strict=True)):
            pred = weight * np.asarray(member.predict(X[:, self.columns(i)]), dtype=np.float64)
            total = pred if total is None else total + pred
        return total / self.weights.sum()

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
