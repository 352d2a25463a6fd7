"""A retrain's rows: the spec's source plus the served rows whose labels have arrived.

Labelled log rows (predictions joined with their feedback, :func:`mlsd.predlog.reader.labelled`)
carry the raw inputs a client sent and the true label. They become rows of the source's
columns, typed like the source (the label lands in the target column; columns the clients
never send stay empty). The most recent of the rows labelled after the champion was built
form the fresh holdout: neither model has seen them, so champion and challenger are compared
on equal terms. The rest, with the source, is cut by the spec's window and is what the
challenger learns from.

Ranking (``problem.group``): a request with any feedback brings all its items, those without
a label as not relevant (0: shown, not clicked); the holdout takes whole groups, and no other
log row of a held-out group is learned from.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mlsd.errors import DataError, MlsdError
from mlsd.spec import SystemSpec, parse_duration
from mlsd.tasks import get_task
from mlsd.timestamps import epoch
from mlsd.workspace import Workspace

LOG_TS = "__mlsd_ts"  # epoch seconds of the prediction (source rows: their own time, or NaN)
LABEL_TS = "__mlsd_label_ts"  # epoch seconds the label arrived (source rows: NaN)
GROUP = "group"  # the log field /v1/rank fills with the request's group


class RetrainDataError(MlsdError):
    """The rows a retrain needs are not there (no champion, too few fresh labels)."""

    headline = "cannot retrain"
    exit_code = 2


@dataclass
class Champion:
    """The model serving now: its version, package folder and when it was built."""

    version: int
    package: Path
    created_at: float  # epoch seconds, from the package manifest

    @property
    def created_iso(self) -> str:
        return datetime.fromtimestamp(self.created_at, UTC).isoformat(timespec="seconds")

    @property
    def inputs(self) -> dict[str, str] | None:
        """Input field -> type its package signature declares (what :func:`read_log` reads
        the log with); None when the package has no readable signature."""
        from mlsd.models.package import SIGNATURE
        from mlsd.predlog.reader import input_types

        try:
            return input_types(json.loads((self.package / SIGNATURE).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def champion(spec: SystemSpec, workspace: Workspace) -> Champion:
    """The champion of ``spec``'s system (from the published aliases: no MLflow import)."""
    from mlsd.models import aliases

    published = aliases.read(workspace.root, spec.name)
    version = published["aliases"].get("champion")
    if version is None:
        raise RetrainDataError(
            f"{spec.name!r} has no champion in {workspace.root}",
            hint="train and register a first model with `mlsd train`",
        )
    folder = Path(published["versions"].get(str(version), ""))
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        created = to_epoch(manifest["created_at"])
    except (OSError, ValueError, KeyError) as exc:
        raise RetrainDataError(
            f"the champion (version {version}) has no readable package at {folder}: {exc}",
            hint="restore the package folder, or promote another version (`mlsd promote`)",
        ) from exc
    return Champion(int(version), folder, created)


def to_epoch(value: float | int | str | datetime | None) -> float:
    """Epoch seconds from a number, a datetime or an ISO string (naive means UTC); None is
    now."""
    return time.time() if value is None else epoch(value)


def read_log(
    workspace: Workspace, now: float | None = None, *, inputs: dict[str, str] | None = None
) -> pa.Table:
    """Every labelled prediction in the workspace's log as of ``now`` (epoch seconds, default
    the clock): a label stamped later has not arrived yet. Empty when there is no log.

    ``inputs`` (the champion's :attr:`Champion.inputs`) reads each input field with the
    type the signature declares, as the model read it, instead of the one DuckDB infers."""
    import pyarrow.compute as pc

    from mlsd.predlog.reader import labelled

    table = labelled(workspace, inputs=inputs)
    if table.num_rows == 0:
        return table
    now = to_epoch(now)
    arrived = pc.and_(
        pc.less_equal(table.column("label_ts").cast(pa.float64()), now),
        pc.less_equal(table.column("ts").cast(pa.float64()), now),
    )
    return table.filter(arrived)


def with_implicit_negatives(
    workspace: Workspace, log: pa.Table, now: float, inputs: dict[str, str] | None
) -> pa.Table:
    """``log`` plus the unlabelled items of the requests it has feedback for, labelled 0
    and stamped with their request's latest label time (a ranking's implicit feedback)."""
    import pandas as pd

    from mlsd.predlog.reader import read_predictions

    if log.num_rows == 0:
        return log
    # without the derived timestamp column (ts holds the same instant)
    labelled = log.drop_columns([c for c in ("time",) if c in log.column_names]).to_pandas()
    served = read_predictions(workspace, end=now, inputs=inputs)
    served = served.drop_columns([c for c in ("time",) if c in served.column_names]).to_pandas()
    served = served[served["request_id"].isin(labelled["request_id"])]
    seen = pd.MultiIndex.from_frame(labelled[["request_id", "instance"]])
    unlabelled = served[~pd.MultiIndex.from_frame(served[["request_id", "instance"]]).isin(seen)]
    if unlabelled.empty:
        return log
    latest = labelled.groupby("request_id")["label_ts"].max()
    unlabelled = unlabelled.assign(
        true_label=0, label_ts=unlabelled["request_id"].map(latest), reward=None
    )
    both = pd.concat([labelled, unlabelled[list(labelled.columns)]], ignore_index=True)
    return pa.Table.from_pandas(
        both.sort_values(["ts", "request_id", "instance"]), preserve_index=False
    )


def count_fresh(table: pa.Table, since: float) -> int:
    """Labelled log rows whose label arrived after ``since`` (epoch seconds)."""
    if table.num_rows == 0:
        return 0
    label_ts = table.column("label_ts").to_numpy(zero_copy_only=False).astype(float)
    return int(np.sum(label_ts > since))


def _log_column(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    """The log's column for input field ``name`` (see :func:`input_column`)."""
    from mlsd.predlog.reader import input_column

    column = input_column(name)
    return table.column(column) if column in table.column_names else None


def _cast(values: pa.ChunkedArray, kind: pa.DataType, name: str) -> pa.ChunkedArray:
    """``values`` as the source's type of column ``name``."""
    import pyarrow.compute as pc

    if values.type == kind:
        return values
    try:
        return pc.cast(values, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:  # e.g. 3.0 sent for an integer column, or numbers sent as text
        return pc.cast(pc.cast(values, pa.string()), kind, safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(
            f"served values of '{name}' ({values.type}) cannot be read as the source's "
            f"{kind}: {exc}",
            hint="send the field typed as in the training data",
        ) from exc


def log_rows(spec: SystemSpec, log: pa.Table, schema: pa.Schema) -> pa.Table:
    """Labelled log rows as rows of the source: its columns, types and order, plus
    ``__mlsd_ts`` and ``__mlsd_label_ts``."""
    import pyarrow.compute as pc

    target = spec.problem.target
    arrays, names = [], []
    for item in schema:
        values = log.column("true_label") if item.name == target else _log_column(log, item.name)
        if item.name == spec.problem.group and GROUP in log.column_names:
            # /v1/rank logs the group beside the items, not as an input field of theirs
            logged = log.column(GROUP)
            values = logged if values is None else pc.coalesce(logged, values.cast(logged.type))
        if values is None:
            arrays.append(pa.nulls(log.num_rows, item.type))
        else:
            arrays.append(_cast(values, item.type, item.name))
        names.append(item.name)
    arrays += [log.column("ts").cast(pa.float64()), log.column("label_ts").cast(pa.float64())]
    return pa.table(arrays, names=[*names, LOG_TS, LABEL_TS])


def _time_order(spec: SystemSpec, table: pa.Table) -> np.ndarray:
    """Row order by the spec's time columns (when every row has them), else as given."""
    time_cols = [c for c in spec.problem.time if c in table.column_names]
    if not time_cols or len(time_cols) < len(spec.problem.time):
        return np.arange(table.num_rows)
    import pyarrow.compute as pc

    keys = [(c, "ascending") for c in time_cols] + [(LOG_TS, "ascending")]
    return pc.sort_indices(table, sort_keys=keys).to_numpy()


def _source_times(spec: SystemSpec, table: pa.Table, default: float) -> np.ndarray:
    """Epoch seconds of each source row: its first time column when that is a date or a
    timestamp, else ``default`` (a source without clock times counts as dated when the
    champion was trained)."""
    first = spec.problem.time[0] if spec.problem.time else None
    if first and first in table.column_names:
        kind = table.schema.field(first).type
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            seconds = table.column(first).cast(pa.timestamp("us")).cast(pa.int64())
            return seconds.to_numpy(zero_copy_only=False).astype(float) / 1e6
    return np.full(table.num_rows, default)


@dataclass
class RetrainData:
    """What a retrain learns from and what it is judged on."""

    train: pa.Table  # the source's columns and types: passed to train(data=...)
    holdout: pa.Table  # the fresh holdout, same columns (never in ``train``)
    window: str  # the window applied, as a person reads it
    counts: dict[str, int] = field(default_factory=dict)
    holdout_span: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window, "counts": self.counts, "holdout": self.holdout_span}


def assemble(
    spec: SystemSpec,
    workspace: Workspace,
    champ: Champion,
    *,
    now: float | None = None,
    log: pa.Table | None = None,
) -> RetrainData:
    """The challenger's training rows and the fresh holdout (see the module docstring)."""
    from mlsd.data.sources import read_source

    now = to_epoch(now)
    policy = spec.retraining
    source = read_source(spec.data.source, spec.base_dir)
    grouped = get_task(spec.problem.task).grouped
    if log is None:
        log = read_log(workspace, now, inputs=champ.inputs)
        if grouped:
            log = with_implicit_negatives(workspace, log, now, champ.inputs)
    served = log_rows(spec, log, source.schema)
    label_ts = served.column(LABEL_TS).to_numpy(zero_copy_only=False)
    fresh = np.flatnonzero(label_ts > champ.created_at)
    if len(fresh) < policy.min_new_labels:
        raise RetrainDataError(
            f"{len(fresh)} labelled log rows arrived after the champion (version "
            f"{champ.version}, built {champ.created_iso}); a retrain needs "
            f"retraining.min_new_labels = {policy.min_new_labels} (the fresh holdout is cut "
            "from them)",
            hint="send feedback (POST /v1/feedback) for served predictions, or lower "
            "retraining.min_new_labels",
        )
    # the fresh holdout: the most recent fresh rows by prediction time
    n_holdout = math.ceil(policy.holdout.share * len(fresh))
    if policy.holdout.rows:
        n_holdout = min(n_holdout, policy.holdout.rows)
    ts = served.column(LOG_TS).to_numpy(zero_copy_only=False)
    by_time = fresh[np.argsort(ts[fresh], kind="stable")]
    held = np.sort(by_time[len(by_time) - n_holdout :])
    keep = np.ones(served.num_rows, dtype=bool)
    keep[held] = False
    if grouped:  # whole groups: every fresh row of a held-out group, none learned from
        groups = served.column(spec.problem.group).to_numpy(zero_copy_only=False).astype(str)
        chosen = np.isin(groups, groups[held])
        held = np.intersect1d(np.flatnonzero(chosen), fresh)
        keep &= ~chosen
    holdout = served.take(pa.array(held))

    source_rows = source.append_column(
        LOG_TS, pa.array(_source_times(spec, source, champ.created_at), pa.float64())
    ).append_column(LABEL_TS, pa.nulls(source.num_rows, pa.float64()))
    rows = pa.concat_tables([source_rows, served.filter(pa.array(keep))])
    rows = rows.take(pa.array(_time_order(spec, rows)))
    window = policy.window
    if window.kind == "rows":
        rows = rows.slice(max(0, rows.num_rows - window.rows))
        text = f"the most recent {window.rows:,} rows"
    elif window.kind == "sliding":
        start = now - parse_duration(window.sliding)
        times = rows.column(LOG_TS).to_numpy(zero_copy_only=False)
        rows = rows.filter(pa.array(times >= start))
        text = f"rows of the last {window.sliding}"
    else:
        text = "every row (expanding)"
    from_log = int(np.sum(~np.isnan(rows.column(LABEL_TS).to_numpy(zero_copy_only=False))))
    holdout_ts = ts[held]
    return RetrainData(
        train=rows.drop_columns([LOG_TS, LABEL_TS]),
        holdout=holdout.drop_columns([LOG_TS, LABEL_TS]),
        window=text,
        counts={
            "source_rows": source.num_rows,
            "labelled_log_rows": served.num_rows,
            "fresh_log_rows": len(fresh),
            "holdout_rows": len(held),
            "train_rows": rows.num_rows,
            "train_rows_from_log": from_log,
        },
        holdout_span={
            "rows": len(held),
            "from": _iso(float(holdout_ts.min())) if len(held) else None,
            "to": _iso(float(holdout_ts.max())) if len(held) else None,
            "rule": "the most recent labelled log rows whose labels arrived after the "
            f"champion (version {champ.version}) was built",
        },
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
