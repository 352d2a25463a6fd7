"""Several fitted featurizers side by side: one matrix whose column spans are each part's
features, so an ensemble can hold members that read the inputs differently (LightGBM's
integer codes beside a linear model's one-hot, standardised columns) and still be one
package with one featurizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlsd.features.featurizer import FeatureError, FittedFeaturizer

FORMAT = "mlsd.featurizer.stacked"
VERSION = 1
ENCODING = "stacked"


class StackedFeaturizer:
    """The parts' features one after the other; ``spans[i]`` are part i's columns."""

    encoding = ENCODING

    def __init__(self, parts: Sequence[FittedFeaturizer]):
        if len(parts) < 2:
            raise FeatureError("a stack needs two featurizers or more", hint="use the one")
        self.parts = list(parts)
        columns = [dict(p.input_columns) for p in self.parts]
        if any(c != columns[0] for c in columns[1:]):
            raise FeatureError(
                "stacked featurizers must read the same input columns",
                hint="fit every part on the same columns",
            )
        self.input_columns = columns[0]
        self.feature_names: list[str] = []
        self.categorical_indices: list[int] = []
        self.spans: list[tuple[int, int]] = []
        for part in self.parts:
            start = len(self.feature_names)
            self.feature_names += [f"{part.encoding}:{n}" for n in part.feature_names]
            self.categorical_indices += [start + i for i in part.categorical_indices]
            self.spans.append((start, len(self.feature_names)))

    @property
    def transforms(self) -> list:
        """Every part's transforms in column order (what importance maps features by)."""
        return [t for part in self.parts for t in part.transforms]

    def part_for(self, span: Sequence[int]) -> FittedFeaturizer:
        """The part whose columns are ``span`` (start, stop)."""
        return self.parts[self.spans.index((int(span[0]), int(span[1])))]

    def transform(self, data: Mapping[str, Any]) -> np.ndarray:
        """Each part's features of ``data``, side by side (float64, C-contiguous)."""
        return np.ascontiguousarray(np.hstack([p.transform(data) for p in self.parts]))

    def to_json(self) -> dict:
        """The parts' states as plain JSON."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "parts": [p.to_json() for p in self.parts],
        }

    def __repr__(self) -> str:
        return f"StackedFeaturizer({' + '.join(repr(p) for p in self.parts)})"


def stack(parts: Sequence[FittedFeaturizer]) -> FittedFeaturizer | StackedFeaturizer:
    """One featurizer reading as ``parts`` do: the part itself when there is one (or all
    are the same object), else a :class:`StackedFeaturizer`."""
    distinct = list({id(p): p for p in parts}.values())
    return distinct[0] if len(distinct) == 1 else StackedFeaturizer(distinct)


def featurizer_from_json(state: Mapping[str, Any]) -> FittedFeaturizer | StackedFeaturizer:
    """A saved featurizer, plain or stacked (by its ``format``)."""
    if isinstance(state, Mapping) and state.get("format") == FORMAT:
        if state.get("version") != VERSION:
            raise FeatureError(
                f"saved stacked featurizer has version {state.get('version')!r}; this mlsd "
                f"reads version {VERSION}",
                hint="re-train with this version of mlsd",
            )
        return StackedFeaturizer([FittedFeaturizer.from_json(p) for p in state.get("parts", [])])
    return FittedFeaturizer.from_json(state)
