"""The candidate families by name: make a model for a spec's ``models.candidates`` entry, or
load any saved model by the family written in its ``model.json``.

The family modules import their heavy libraries (scikit-learn, lightgbm) only inside fit and
load, so importing this module is cheap and loading a linear model never touches sklearn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlsd.errors import did_you_mean
from mlsd.models.base import Model, ModelError, TaskInfo, read_header
from mlsd.models.gbdt import GBDTModel
from mlsd.models.linear import LinearModel

FAMILIES: dict[str, type[Model]] = {"linear": LinearModel, "lightgbm": GBDTModel}


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
    """Load a saved model of any family (read from its ``model.json``)."""
    header = read_header(Path(folder))
    family = header.get("family")
    if family == "ensemble":  # an average of saved members of the families below
        from mlsd.models.ensemble import EnsembleModel

        return EnsembleModel.load(Path(folder))
    if family not in FAMILIES:
        raise ModelError(
            f"{Path(folder)} holds a model of unknown family {family!r}",
            hint=f"this mlsd knows {', '.join(FAMILIES)}; re-train with one of them or "
            "upgrade mlsd",
        )
    return FAMILIES[family].load(Path(folder))
