"""The calibration a package carries: a monotone map from a model's positive-class
probability to a calibrated one, plain JSON applied with numpy only (the server needs no
scikit-learn). :mod:`mlsd.evaluation.calibration` fits and chooses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlsd.errors import MlsdError

METHODS = ("platt", "isotonic")
_CLIP = 1e-12  # keeps logit finite for scores of exactly 0 or 1


class CalibrationError(MlsdError):
    """A calibrator cannot be fitted, read or applied as asked."""

    headline = "calibration error"


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), finite for scores of exactly 0 or 1."""
    p = np.clip(p, _CLIP, 1.0 - _CLIP)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


@dataclass
class Calibrator:
    """A monotone map from a model's positive-class probability to a calibrated one.

    ``platt``: ``sigmoid(a * logit(p) + b)`` with ``params = {"a", "b"}``. ``isotonic``: the
    piecewise-linear map through the breakpoints ``params = {"x", "y"}`` (``np.interp``,
    flat beyond the ends, as scikit-learn's ``out_of_bounds="clip"``).
    """

    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for scores ``p`` (any shape)."""
        p = np.asarray(p, dtype=np.float64)
        if self.method == "platt":
            return _sigmoid(self.params["a"] * logit(p) + self.params["b"])
        if self.method == "isotonic":
            return np.interp(p, self.params["x"], self.params["y"])
        raise CalibrationError(
            f"unknown calibration method {self.method!r}", hint=f"use one of {METHODS}"
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON form (``calibration.json`` of a package)."""
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibrator:
        """Read :meth:`to_json` output back, checking its shape."""
        try:
            method, params = data["method"], data["params"]
            if method == "platt":
                params = {"a": float(params["a"]), "b": float(params["b"])}
            elif method == "isotonic":
                x = [float(v) for v in params["x"]]
                y = [float(v) for v in params["y"]]
                if len(x) != len(y) or not x or bool(np.any(np.diff(x) < 0)):
                    raise ValueError("x and y must be equal-length, non-empty, x ascending")
                params = {"x": x, "y": y}
            else:
                raise ValueError(f"unknown method {method!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(
                f"not a calibrator: {exc}",
                hint="calibration.json must hold {method: platt|isotonic, params: ...}",
            ) from exc
        return cls(method, params)
