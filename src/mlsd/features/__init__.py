"""Step 5, features: pick the feature columns and fit a featurizer on the training split.

The fitted featurizer is plain JSON and transforms columnar numpy/list input with one code
path offline and online. Importing this package imports numpy only (no pandas, no pyarrow).
"""

from mlsd.features.featurizer import (
    Featurizer,
    FittedFeaturizer,
    frame_inputs,
    load,
    save,
)

__all__ = [
    "Featurizer",
    "FittedFeaturizer",
    "frame_inputs",
    "load",
    "save",
]
