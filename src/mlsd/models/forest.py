"""The random-forest candidate: LightGBM's ``rf`` boosting, where each tree fits the target
on its own sample of rows and features and the forest averages them. It shares the boosted
trees' fitting, text format and runtime (:mod:`mlsd.models.gbdt`); only its parameter table
(a fixed number of trees, no early stopping) and the way trees are grown differ."""

from __future__ import annotations

from typing import Any, ClassVar

from mlsd.model_params import RANDOM_FOREST
from mlsd.models.gbdt import GBDTModel


class RandomForestModel(GBDTModel):
    """A LightGBM random forest (``boosting: rf``, every tree bagged), saved as LightGBM text."""

    family = RANDOM_FOREST.name
    declaration = RANDOM_FOREST
    boosting: ClassVar[dict[str, Any]] = {"boosting": "rf", "bagging_freq": 1}
