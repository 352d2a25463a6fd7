"""A small regression system for the loop tests: a source, a champion, served traffic."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlsd.models.train import train
from mlsd.predlog.writer import PredictionLog
from mlsd.spec import load_spec
from mlsd.workspace import Workspace

SPEC = """name: loop
problem: {{task: regression, target: y}}
metrics: {metrics}
data:
  source: d.csv
  columns:
    a: {{type: numeric, min: -10, max: 10}}
models: {{candidates: [linear]}}
{extra}"""


def frame(n: int, seed: int, coef=(3.0, -2.0, 0.5, 0.0), noise: float = 0.5) -> pd.DataFrame:
    """y = coef · (a, b, c, d) + noise: a concept the tests can change."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = x @ np.asarray(coef) + rng.normal(scale=noise, size=n)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3], "y": y})


def system(folder: Path, source: pd.DataFrame, extra: str = "", metrics: str = "{primary: mae}"):
    """Write the source and system.yaml in ``folder``; return (spec, workspace)."""
    folder.mkdir(parents=True, exist_ok=True)
    source.to_csv(folder / "d.csv", index=False)
    (folder / "system.yaml").write_text(SPEC.format(extra=extra, metrics=metrics))
    spec = load_spec(folder / "system.yaml")
    return spec, Workspace.for_spec(spec)


def champion(folder: Path, source: pd.DataFrame, extra: str = "", metrics: str = "{primary: mae}"):
    """A system with a trained, registered champion (version 1)."""
    spec, ws = system(folder, source, extra, metrics)
    result = train(spec, ws, progress=False)
    assert result.registered and result.model_version == 1
    return spec, ws


OTHER = (-3.0, 2.0, 0.5, 1.0)  # another world than frame's default, for a worse model


def three_versions(folder: Path, extra: str = "") -> Path:
    """A system with versions 1 (the champion), 2 (learned the OTHER world: worse on
    frame's traffic) and 3 (this world, another sample); returns its folder."""
    spec, ws = champion(folder, frame(1200, 0), extra)
    for seed, coef in ((1, OTHER), (2, None)):
        frame(1200, seed, **({"coef": coef} if coef else {})).to_csv(folder / "d.csv", index=False)
        assert train(spec, ws, progress=False).registered
    return folder


def serve(
    ws: Workspace,
    rows: pd.DataFrame,
    *,
    start: float | None = None,
    step: float = 0.001,
    version: str = "1",
    labelled: bool = True,
    predict: bool = False,
) -> float:
    """Log ``rows`` as served predictions ``step`` seconds apart from ``start`` (default:
    now), each labelled half a step later; waits until the last label's time has passed (a
    label stamped in the future has not arrived); ``predict`` logs the champion's outputs
    (else 0). Returns the ts of the first row."""
    start = time.time() if start is None else start
    outputs = np.zeros(len(rows))
    if predict:  # what the champion answers, as a server would log it
        from mlsd.models import aliases, package

        folder = aliases.resolve(ws.root, ws.system, "champion")[1]
        champ = package.load(folder)
        outputs = champ.predict_matrix({c: rows[c].to_numpy() for c in "abcd"})
    with PredictionLog(ws) as log:
        for i, row in enumerate(rows.to_dict("records")):
            label = row.pop("y")
            ts = start + i * step
            log.prediction(
                request_id=f"r{start:.3f}-{i}",
                model_version=version,
                inputs=[row],
                outputs=[{"value": float(outputs[i])}],
                latency_ms=1.0,
                ts=ts,
            )
            if labelled:
                log.feedback(request_id=f"r{start:.3f}-{i}", label=label, ts=ts + step / 2)
    time.sleep(max(0.0, start + len(rows) * step - time.time()))
    return start
