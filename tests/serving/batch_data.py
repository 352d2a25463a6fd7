"""A small table of each task, trained once per test module, and rows that fail validation:
what the batch-scoring tests of both engines score (tests/serving/test_batch*.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlsd.models.train import train
from mlsd.serving.batch import predict_batch
from mlsd.serving.model import load_served
from mlsd.spec import parse_spec
from mlsd.workspace import Workspace

TASKS = {  # both model families: LightGBM for the classifiers, linear for regression
    "binary": "models: {candidates: [lightgbm]}\n",
    "multiclass": "models: {candidates: [lightgbm]}\n",
    "regression": "models: {candidates: [linear]}\n",
}


def frame(task: str, n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 11, n)
    b = rng.normal(size=n)
    b[rng.random(n) < 0.05] = np.nan  # missing values: empty CSV cells
    c = rng.choice(["red", "green", "blue"], n)
    k = rng.choice([1, 2, 3, 4], n)
    z = a / 3 + 2 * np.nan_to_num(b) + (c == "red") + (k == 2) + rng.normal(scale=0.5, size=n)
    if task == "binary":
        y = np.where(z > 2.5, "p", "n")
    elif task == "multiclass":
        y = np.select([z < 1.5, z < 3.5], ["low", "mid"], "high")
    else:
        y = z * 10
    cust = [f"C{i:05d}" for i in range(n)]
    return pd.DataFrame({"cust": cust, "a": a, "b": b, "c": c, "k": k, "y": y})


class System:
    def __init__(self, folder, task):
        self.folder, self.task = folder, task
        self.data = folder / "d.csv"
        frame(task).to_csv(self.data, index=False)
        (folder / "system.yaml").write_text("# written by the test\n")
        self.spec = self.make_spec()
        self.workspace = Workspace(folder / "ws")
        result = train(self.spec, self.workspace, progress=False)
        assert result.registered, result.reasons

    def spec_text(self, **serving) -> str:
        """The system.yaml of this system, with ``serving`` settings when given."""
        text = (
            f"name: t\nproblem: {{task: {self.task}, target: y, id: cust}}\n"
            "data:\n  source: d.csv\n  columns: {k: categorical}\n" + TASKS[self.task]
        )
        if serving:
            text += "serving: {" + ", ".join(f"{k}: {v}" for k, v in serving.items()) + "}\n"
        return text

    def make_spec(self, **serving):
        spec = parse_spec(self.spec_text(**serving))
        spec._path = self.folder / "system.yaml"
        return spec

    def served(self, **serving):
        spec = self.make_spec(**serving)
        return load_served(self.workspace.root, spec.name, "champion", spec.serving)

    def predict(self, input_path, output_path, **kwargs):
        serving = kwargs.pop("serving", {})
        spec = self.make_spec(**serving)
        return predict_batch(
            spec, input_path, output_path, workspace=self.workspace, progress=False, **kwargs
        )


BAD_ROWS = "\n".join(
    [
        "cust,a,b,c,k,y",
        "G1,3,0.5,red,2,p",  # fine
        "X1,1000,0.5,red,2,p",  # a outside the training range
        "X2,3,abc,blue,1,n",  # b is not a number
        "X3,3,inf,blue,1,n",  # b is not finite
        "X4,3,0.1,purple,1,n",  # c is not a known category
        "X5,0,0.1,green,9,n",  # a below the range and k unknown: two problems
        "G2,10,,green,4,n",  # fine: a missing b is a missing value
        "G3,1,-0.25,blue,1.0,n",  # fine: 1.0 and 1 are the same category
    ]
)
BAD_VALUES = {  # the same instances as a JSON client would send them
    "X1": {"a": 1000, "b": 0.5, "c": "red", "k": 2},
    "X2": {"a": 3, "b": "abc", "c": "blue", "k": 1},
    "X3": {"a": 3, "b": float("inf"), "c": "blue", "k": 1},
    "X4": {"a": 3, "b": 0.1, "c": "purple", "k": 1},
    "X5": {"a": 0, "b": 0.1, "c": "green", "k": 9},
}


def system_factory(tmp_path_factory):
    """``get(task)``: the task's :class:`System`, trained on first use, once per module."""
    made = {}

    def get(task: str) -> System:
        if task not in made:
            made[task] = System(tmp_path_factory.mktemp(task), task)
        return made[task]

    return get
