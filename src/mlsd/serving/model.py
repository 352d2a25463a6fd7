"""The model a server or a batch job answers with: a verified package, its validator, and
one function from columns of request values to JSON-ready outputs."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.errors import MlsdError
from mlsd.models import aliases
from mlsd.models import package as packages
from mlsd.recsys import package as recommenders
from mlsd.serving.validation import RequestValidator
from mlsd.spec import ServingSpec
from mlsd.tasks import LABEL, NUMBER, PER_CLASS, Task, get_task


class ServingError(MlsdError):
    """A model cannot be served (not found, fails verification, answers wrongly)."""

    headline = "cannot serve"


@dataclass(frozen=True)
class ServedModel:
    """An immutable serving unit; a swap replaces the whole object in one assignment."""

    name: str
    version: int | None  # None for a package folder served directly
    package: packages.Package
    validator: RequestValidator
    loaded_at: float

    @cached_property
    def task(self) -> Task:
        """The package's task kind (what its outputs look like)."""
        return get_task(self.package.manifest["meta"]["task"])

    @cached_property  # read several times per request
    def label(self) -> str:
        """How responses and logs name this model: its version, else its folder."""
        return str(self.version) if self.version is not None else self.package.folder.name

    def predict(self, columns: dict[str, list]) -> list[dict[str, Any]]:
        """One output object per row of ``columns`` (field -> list of values)."""
        return format_outputs(self.package.predict_matrix(columns), self.package.signature)

    def check_holdout(self) -> None:
        """Answer the package's holdout through this serving path; refuse on any difference."""
        inputs, expected = packages.holdout(self.package)
        got = np.asarray([_numbers(o, self.task) for o in self.predict(inputs)], dtype=np.float64)
        want = expected.reshape(len(expected), -1)
        if got.shape != want.shape or not np.allclose(
            got, want, rtol=1e-9, atol=1e-12, equal_nan=True
        ):
            raise ServingError(
                f"the served answers for {self.package.folder.name}'s holdout differ from the "
                "outputs recorded at build time",
                hint="rebuild the package with this version of mlsd",
            )


@dataclass(frozen=True)
class ServedRecommender:
    """A recommender package being served: ``/v1/recommend`` answers with it."""

    name: str
    version: int | None
    package: recommenders.RecommenderPackage
    loaded_at: float

    @cached_property
    def label(self) -> str:
        """How responses and logs name this model: its version, else its folder."""
        return str(self.version) if self.version is not None else self.package.folder.name

    def recommend(
        self,
        user: Any,
        k: int | None = None,
        exclude: list | None = None,
        explore: np.random.Generator | None = None,
    ) -> dict[str, Any]:
        """One user's answer: items with scores and stages, and whether it is a cold start
        (``explore``: the random source of the exploration share, for live answers)."""
        return self.package.recommender.recommend([user], k, [exclude or []], explore=explore)[0]


def _numbers(output: dict[str, Any], task: Task) -> list[float]:
    """The numeric part of an output, in the order the package records it."""
    numbers = []
    for field in task.outputs:
        if field.kind == NUMBER:
            numbers.append(output[field.name])
        elif field.kind == PER_CLASS:
            numbers.extend(output[field.name].values())
    return numbers


def _clean(x: float) -> float | None:
    return x if math.isfinite(x) else None


def format_outputs(pred: np.ndarray, signature: dict) -> list[dict[str, Any]]:
    """Model outputs as JSON objects with the task's output fields (``Task.outputs``):
    numbers as floats, labels as the package's class values, per-class numbers as an object
    keyed by class. Non-finite numbers become null."""
    output = signature["output"]
    task = get_task(output["task"])
    classes = output.get("classes") or []
    # compared and answered as Python floats, whatever the model's dtype
    pred = np.asarray(pred, dtype=np.float64)
    values = task.output_values(pred, output.get("threshold", 0.5))
    rows: list[dict[str, Any]] = [{} for _ in range(len(pred))]
    for field, v in zip(task.outputs, values, strict=True):
        if field.kind == LABEL:
            column = [classes[i] for i in v.tolist()]
        elif field.kind == PER_CLASS:
            names = [str(c) for c in classes]
            column = [dict(zip(names, map(_clean, row), strict=True)) for row in v.tolist()]
        else:
            column = v.tolist()
            if not all(map(math.isfinite, column)):
                column = [_clean(x) for x in column]
        for row, value in zip(rows, column, strict=True):
            row[field.name] = value
    return rows


def load_served(
    workspace_root: Path, system: str, ref: str | int, serving: ServingSpec
) -> ServedModel | ServedRecommender:
    """Resolve ``ref`` without MLflow, load and verify the package, check its holdout
    through the serving path, and build the request validator."""
    version, folder = aliases.resolve(workspace_root, system, ref)
    return load_version(system, version, folder, serving)


def load_version(
    system: str, version: int | None, folder: str | Path, serving: ServingSpec
) -> ServedModel | ServedRecommender:
    """Load and verify the package in ``folder`` as ``version`` of ``system`` (no alias
    resolution: a routing table names its arms' folders), check its holdout through the
    serving path, and build the request validator. A recommender's package (replayed on
    load) becomes a :class:`ServedRecommender`."""
    if packages.format_of(folder) == recommenders.FORMAT:
        try:
            return ServedRecommender(system, version, recommenders.load(folder), time.time())
        except packages.PackageError as exc:
            raise ServingError(
                f"version {version} ({folder}) failed verification: {exc.message}", hint=exc.hint
            ) from exc
    try:
        package = packages.load(folder)
    except packages.PackageError as exc:
        raise ServingError(
            f"version {version} ({folder}) failed verification: {exc.message}", hint=exc.hint
        ) from exc
    validator = RequestValidator(
        package.signature,
        on_invalid=serving.on_invalid,
        unknown_fields=serving.unknown_fields,
        max_instances=serving.max_instances,
    )
    served = ServedModel(
        name=system, version=version, package=package, validator=validator, loaded_at=time.time()
    )
    served.check_holdout()
    return served


def identity(version: int | None, folder: str | Path) -> tuple[int | None, str]:
    """What makes two loaded models the same: the version and the package folder's real
    path (a model already loaded under this identity is reused, not loaded again)."""
    return version, str(Path(folder).resolve())
