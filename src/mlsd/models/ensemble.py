"""Ensembles: the average of already-fitted candidates, kept only when it beats the best single
model on the validation split by the spec's margin (``evaluation.ensemble``).

A package has one featurizer, so the members are the top candidates that share the chosen
model's featurizer (the same encoding: LightGBM variants together, linear variants together).
The average is an :class:`~mlsd.models.families.EnsembleModel`, saved as its members' own
native files (LightGBM text, coefficients JSON), never a pickle.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlsd.models.base import Model, TaskInfo
from mlsd.models.families import EnsembleModel


def average(members: Sequence[Model], names: Sequence[str], task: TaskInfo) -> EnsembleModel:
    """An ensemble averaging ``members`` (fitted), called ``names`` in reports."""
    return EnsembleModel(task, {"method": "average", "members": list(names)}, 0, members)
