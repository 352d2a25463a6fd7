"""``mlsd train`` for a funnel (``architecture.kind: funnel``): validate the interactions,
split each user's, tune every generator on validation, let the honest gate choose between
the funnel and the best generator alone, measure everything once on test, package what was
chosen (refitted on every interaction) and register it.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mlsd.data.snapshot import load_dataset
from mlsd.data.sources import read_source
from mlsd.errors import MlsdError
from mlsd.evaluation.metrics import get_metric
from mlsd.recsys.evaluate import (
    activity_segments,
    beyond_accuracy,
    ranking_scores,
    top_items,
)
from mlsd.recsys.funnel import Funnel, candidate_recall, choose, percentile
from mlsd.recsys.generators import GENERATORS, Generator
from mlsd.recsys.interactions import TEST, TRAIN, VALID, Interactions, latest, split_per_user
from mlsd.recsys.retrieval import EXACT_MAX
from mlsd.recsys.runtime import FUNNEL, Counts, Recommender, Side, scorer
from mlsd.recsys.validate import validate_interactions
from mlsd.spec import SystemSpec
from mlsd.stages import Stages
from mlsd.workspace import Workspace, write_json

METRICS = ("ndcg@{k}", "recall@{k}", "precision@{k}", "mrr@{k}", "map@{k}", "hit_rate@{k}")


class FunnelTrainError(MlsdError):
    """A funnel cannot be trained from these interactions."""

    headline = "cannot train the funnel"


@dataclass
class FunnelResult:
    """What ``mlsd train`` did for a funnel: every candidate's figures, the choice and
    where the package went."""

    system: str
    primary_metric: str
    chosen: str
    reason: str
    leaderboard: list[dict[str, Any]]
    stages: dict[str, Any]
    snapshot: str
    validation: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    registered: bool = False
    model_version: int | None = None
    alias: str | None = None
    package: str | None = None
    run_id: str | None = None
    report: str | None = None  # evaluation.html
    # the chosen candidate's test lists: user id -> (listed item ids, held-out item ids)
    test_lists: dict[Any, tuple[list, list]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["test_lists"]
        return {"task": "recommendation", **out}

    def summary_lines(self) -> list[str]:
        metric = self.primary_metric
        lines = [f"trained {self.system}: a recommender funnel on snapshot {self.snapshot}"]
        lines.append(f"  {'candidate':<12} {'valid ' + metric:>16} {'test ' + metric:>16}")
        for entry in self.leaderboard:
            mark = " <- chosen" if entry["name"] == self.chosen else ""
            lines.append(
                f"  {entry['name']:<12} {entry['valid'][metric]:>16.4f} "
                f"{entry['test'][metric]:>16.4f}{mark}"
            )
        recall = self.stages["candidate_recall"]
        lines.append(
            f"  candidate recall@{self.stages['candidates']} on test: "
            + ", ".join(f"{k} {v:.3f}" for k, v in recall.items())
        )
        served = self.stages.get("served")
        if served:
            coverage = next(v for n, v in served["test"].items() if n.startswith("coverage@"))
            lines.append(
                f"  {self.chosen} as served (rules, diversity {served['diversity']:g}): test "
                f"{metric} {served['test'][metric]:.4f}, coverage {coverage:.3f}"
            )
        lines.append(f"  {self.reason}")
        if self.registered:
            lines.append(f"registered version {self.model_version} as {self.alias}: {self.package}")
        if self.report:
            lines.append(f"report: {self.report}")
        return lines


def train_funnel(
    spec: SystemSpec,
    workspace: Workspace | None = None,
    *,
    progress: bool | None = None,
    data: Any = None,
) -> FunnelResult:
    """Train, evaluate per stage, package and register the spec's funnel. ``data`` (an
    Arrow table of interactions) replaces the spec's source, as ``mlsd retrain`` passes."""
    workspace = workspace or Workspace.for_spec(spec)
    stages = Stages(10, label=f"train {spec.name}", show=progress)
    try:
        return _train(spec, workspace, stages, data)
    finally:
        stages.close()


def interactions_of(spec: SystemSpec, frame: pd.DataFrame) -> Interactions:
    """The spec's interactions: users from ``problem.id``, items from ``problem.target``."""
    return Interactions.from_frame(frame, spec.problem.id, spec.problem.target)


def read_table(spec: SystemSpec, which: str) -> pd.DataFrame | None:
    """``data.items`` or ``data.users`` as a frame (None when not declared)."""
    source = getattr(spec.data, which)
    return None if source is None else read_source(source, spec.base_dir).to_pandas()


def validate_funnel_data(spec: SystemSpec, frame: pd.DataFrame) -> tuple[dict, list]:
    """Facts and findings of the spec's interactions (and item table)."""
    return validate_interactions(
        frame,
        spec.problem.id,
        spec.problem.target,
        time_column=spec.problem.time[0] if spec.problem.time else None,
        items=read_table(spec, "items"),
        item_key=spec.problem.target,
    )


def validate_interactions_report(spec: SystemSpec, workspace: Workspace) -> dict[str, Any]:
    """``mlsd validate`` for a funnel: the facts and findings of the interactions, written
    to the workspace's reports as validation.json."""
    return _validation(spec, workspace, load_dataset(spec, workspace))


def _validation(spec: SystemSpec, workspace: Workspace, dataset: Any) -> dict[str, Any]:
    facts, findings = validate_funnel_data(spec, dataset.frame)
    report = {
        "system": spec.name,
        "snapshot": dataset.snapshot_id,
        "facts": facts,
        "anomalies": [asdict(a) for a in findings],
        "passed": not any(a.blocking for a in findings),
    }
    write_json(workspace.reports / "validation.json", report)
    return report


def split(spec: SystemSpec, frame: pd.DataFrame, interactions: Interactions) -> np.ndarray:
    """TRAIN/VALID/TEST per interaction: each user's at random (per_user) or their last
    ones (per_user_time), or the newest of all (time: one cut in time for everyone)."""
    valid, test = spec.data.split.valid, spec.data.split.test
    shares = (1 - valid - test, valid, test)
    if spec.split_method == "per_user":
        return split_per_user(interactions.user_codes, shares, spec.seed)
    times = _times(frame[spec.problem.time[0]])
    if spec.split_method == "per_user_time":
        return split_per_user(interactions.user_codes, shares, spec.seed, times=times)
    order = np.lexsort((np.random.default_rng(spec.seed).random(len(times)), times))
    labels = np.empty(len(times), dtype=np.int8)
    n_test, n_valid = round(test * len(times)), round(valid * len(times))
    labels[order] = TRAIN
    labels[order[len(order) - n_test - n_valid : len(order) - n_test]] = VALID
    labels[order[len(order) - n_test :]] = TEST
    return labels


def _times(column: pd.Series) -> np.ndarray:
    """Event times as numbers (unreadable ones first)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return column.astype("int64").to_numpy()
    return pd.to_numeric(column, errors="coerce").fillna(-np.inf).to_numpy()


def _train(spec: SystemSpec, workspace: Workspace, stages: Stages, table: Any) -> FunnelResult:
    arch = spec.architecture
    metric = get_metric(spec.metrics.primary or f"ndcg@{arch.k}", "ranking").name
    dataset = load_dataset(spec, workspace, stages, table=table)
    frame = dataset.frame
    with stages("validate"):
        validation = _validation(spec, workspace, dataset)
        if not validation["passed"]:
            blocking = [a["message"] for a in validation["anomalies"] if a["severity"] == "error"]
            raise FunnelTrainError(
                f"the interactions have {len(blocking)} blocking problem(s): "
                + "; ".join(blocking[:3]),
                hint="run `mlsd validate` for the details and fixes",
            )
    interactions = interactions_of(spec, frame)
    labels = split(spec, frame, interactions)
    train, valid, test = (interactions.matrix(labels == part) for part in (TRAIN, VALID, TEST))
    seen_for_test = interactions.matrix(labels != TEST)
    when = _pair_times(spec, frame, interactions, labels)

    with stages("tune"):  # each generator over its grid, judged on valid
        settings, tuning = tune(arch.generators, train, valid, metric, spec.seed, when(TRAIN))
    factories = {name: partial(_make, name, settings[name], spec.seed) for name in arch.generators}
    side = side_of(spec, interactions)
    with stages("gate"):
        choice = choose(
            factories,
            train,
            valid,
            metric=metric,
            candidates=arch.candidates,
            seed=spec.seed,
            side=side,
            times=when(TRAIN),
            latest_targets=_latest_targets(spec),
        )
    with stages("test"):
        leaderboard, per_stage, lists = _test(
            spec,
            interactions,
            factories,
            seen_for_test,
            test,
            metric,
            choice,
            settings,
            side,
            when(TRAIN, VALID),
        )
    per_stage["tuning"] = tuning
    result = FunnelResult(
        system=spec.name,
        primary_metric=metric,
        chosen=choice.chosen,
        reason=choice.reason,
        leaderboard=leaderboard,
        stages=per_stage,
        snapshot=dataset.snapshot_id,
        validation=validation,
    )
    users = np.flatnonzero(np.diff(test.indptr))
    items = interactions.items
    result.test_lists = {
        interactions.users[u]: (
            items[row[row >= 0]].tolist(),
            items[test.indices[test.indptr[u] : test.indptr[u + 1]]].tolist(),
        )
        for u, row in zip(users, lists[choice.chosen], strict=True)
    }
    write_json(workspace.reports / "leaderboard.json", leaderboard)
    with stages("report"):
        from mlsd.recsys.report import write_html

        result.report = str(write_html(result, workspace.reports / "evaluation.html"))
        write_json(workspace.reports / "evaluation.json", result.to_dict())
    with stages("package"):  # what was chosen, refitted on every interaction
        package = _package(spec, workspace, interactions, factories, result, settings, side, when())
    with stages("register"):
        _register(spec, workspace, result, package)
    result.timings = stages.timings
    return result


def _pair_times(
    spec: SystemSpec, frame: pd.DataFrame, interactions: Interactions, labels: np.ndarray
) -> Callable[..., sp.csr_matrix | None]:
    """``when(*parts)``: each pair's latest time among the interactions of those split
    parts (all without parts; None without ``problem.time``), so no later part's time
    reaches an earlier part's fit."""
    if not spec.problem.time:
        return lambda *parts: None
    times = _times(frame[spec.problem.time[0]])
    return lambda *parts: latest(interactions, times, np.isin(labels, parts) if parts else None)


def _latest_targets(spec: SystemSpec) -> bool:
    """Under a split in time the ranker learns each user's latest interactions as targets,
    as it will be judged; under a random split, random ones."""
    return spec.split_method != "per_user"


def _make(name: str, params: dict[str, Any], seed: int) -> Generator:
    cls = GENERATORS[name]
    return cls(**params, seed=seed) if cls.form == "factors" else cls(**params)


def tune(
    names: list[str],
    train: sp.csr_matrix,
    valid: sp.csr_matrix,
    metric: str,
    seed: int,
    times: sp.csr_matrix | None = None,
) -> tuple[dict[str, dict], dict[str, list]]:
    """Each generator's settings with the best ``metric`` on ``valid`` over its grid, and
    every setting tried with its score (``times``: each training pair's latest time)."""
    k = get_metric(metric).k or 10
    users = np.flatnonzero(np.diff(valid.indptr))
    best, tried = {}, {}
    for name in names:
        grid = GENERATORS[name].grid
        tried[name] = []
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values, strict=True))
            top = top_items(_make(name, params, seed).fit(train, times), users, k, exclude=train)
            score = ranking_scores(top, valid, users, [metric])[metric]
            tried[name].append({"params": params, metric: score})
        best[name] = max(tried[name], key=lambda t: t[metric])["params"]
    return best, tried


def _test(spec, interactions, factories, seen, test, metric, choice, settings, side, times):
    """Every generator and the funnel refitted on train + valid and scored once on test;
    the funnel's stages: candidate recall of each generator and of their union, and
    coverage, popularity and novelty of each list, and the primary metric per activity.
    With business rules or diversity, the chosen one also as served (filters applied).
    Also each candidate's lists of the test users."""
    valid_scores = choice.valid
    arch = spec.architecture
    k = get_metric(metric).k or arch.k
    names = [m.format(k=k) for m in METRICS]
    users = np.flatnonzero(np.diff(test.indptr))
    segments = activity_segments(seen, users)
    leaderboard, lists = [], {}
    funnel = Funnel(
        factories,
        candidates=arch.candidates,
        seed=spec.seed,
        side=side,
        latest_targets=_latest_targets(spec),
    ).fit(seen, times)
    for name in [*factories, FUNNEL]:
        if name == FUNNEL:
            top = funnel.recommend(users, k, seen)[0]
        else:
            top = top_items(funnel.generators[name], users, k, exclude=seen)
        lists[name] = top
        scores = ranking_scores(top, test, users, names)
        leaderboard.append(
            {
                "name": name,
                "kind": "funnel" if name == FUNNEL else "generator",
                "params": settings.get(name, {"candidates": arch.candidates}),
                "valid": {metric: valid_scores[name]},
                "test": {**scores, **beyond_accuracy(top, seen, k)},
                "segments": {
                    label: ranking_scores(top[np.isin(users, members)], test, members, [metric])[
                        metric
                    ]
                    for label, members in segments.items()
                    if len(members)
                },
            }
        )
    recall = candidate_recall(funnel.generators, users, seen, test, arch.candidates)
    stages = {
        "candidates": arch.candidates,
        "candidate_recall": recall,
        "ranker_importance": funnel.importance(),
        "users_tested": len(users),
    }
    if arch.filters.rules or arch.filters.diversity > 0:
        chosen = choice.chosen
        rec = assemble(
            interactions,
            seen,
            funnel.generators if chosen == FUNNEL else {chosen: funnel.generators[chosen]},
            chosen,
            funnel.ranker,
            k=k,
            candidates=arch.candidates,
            allowed=_allowed(spec, interactions.items),
            diversity=arch.filters.diversity,
            side=side,
        )
        answers = rec.recommend([interactions.users[u] for u in users], k)
        top = np.full((len(users), k), -1, dtype=np.int64)
        for row, answer in zip(top, answers, strict=True):
            listed = [rec.item_index[i["item"]] for i in answer["items"]]
            row[: len(listed)] = listed
        stages["served"] = {
            "name": chosen,
            "rules": arch.filters.rules,
            "diversity": arch.filters.diversity,
            "test": {**ranking_scores(top, test, users, names), **beyond_accuracy(top, seen, k)},
        }
    return leaderboard, stages, lists


def _allowed(spec: SystemSpec, items: pd.Index) -> np.ndarray | None:
    """Which items pass every ``filters.rules`` condition (None without rules)."""
    rules = spec.architecture.filters.rules
    if not rules:
        return None
    import duckdb

    table = read_table(spec, "items")
    key = spec.problem.target
    where = " and ".join(f"({rule})" for rule in rules)
    try:
        con = duckdb.connect()
        con.register("items", table)
        passing = con.execute(f'select "{key}" from items where {where}').fetchnumpy()[key]
    except duckdb.Error as exc:
        raise FunnelTrainError(
            f"architecture.filters.rules cannot be evaluated on the item table: {exc}",
            hint="write each rule as a DuckDB condition over the item table's columns",
        ) from exc
    return np.asarray(items.isin(pd.Index(passing)))


def assemble(
    interactions: Interactions,
    matrix: sp.csr_matrix,
    fitted: dict[str, Generator],
    chosen: str,
    ranker: Any = None,
    *,
    k: int = 10,
    candidates: int = 100,
    allowed: np.ndarray | None = None,
    exclude_seen: bool = True,
    diversity: float = 0.0,
    exploration: float = 0.0,
    ann_above: int = EXACT_MAX,
    seed: int = 0,
    side: Side | None = None,
) -> Recommender:
    """The runtime :class:`Recommender` of generators ``fitted`` on ``matrix`` (every
    interaction of ``interactions``), with ``ranker`` when ``chosen`` is the funnel; with
    ``diversity``, item vectors for MMR (:func:`item_embeddings`). A factor generator over
    more than ``ann_above`` items proposes through a faiss IVF index, calibrated to find 95%
    of its exact proposals at the depth they are read (``candidates`` past a p90 history)."""
    counts = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()
    generators = {n: scorer(g.form, g.arrays()) for n, g in fitted.items()}
    for generator in generators.values():
        if generator.form == "factors" and matrix.shape[1] > ann_above:
            from mlsd.recsys.retrieval import IVFIndex

            depth = candidates + int(np.percentile(np.diff(matrix.indptr), 90))
            rng = np.random.default_rng(seed)
            sample = rng.choice(matrix.shape[0], size=min(matrix.shape[0], 300), replace=False)
            generator.index = IVFIndex.build(
                generator.item_factors,
                target_recall=0.95,
                k=depth,
                calibration_queries=generator.user_factors[sample],
                seed=seed,
            )
    return Recommender(
        users=interactions.users.tolist(),
        items=interactions.items.tolist(),
        indptr=matrix.indptr.astype(np.int64),
        indices=matrix.indices.astype(np.int64),
        generators=generators,
        chosen=chosen,
        k=k,
        candidates=candidates,
        popularity=percentile(counts),
        history=percentile(np.diff(matrix.indptr)),
        fallback=Counts(counts),
        ranker=ranker,
        allowed=allowed,
        exclude_seen=exclude_seen,
        diversity=diversity,
        exploration=exploration,
        embeddings=item_embeddings(matrix) if diversity > 0 else None,
        side=side,
    )


def side_of(spec: SystemSpec, interactions: Interactions) -> Side | None:
    """The ranker's side features from ``data.items`` and ``data.users`` (None without
    either): numbers and booleans as they are, a text column of at most 30 values as one
    0/1 column per value; ids missing from a table get NaN."""
    items, users = read_table(spec, "items"), read_table(spec, "users")
    return side_features(interactions, items, users, spec.problem.target, spec.problem.id)


def side_features(
    interactions: Interactions,
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
    item_key: str,
    user_key: str,
) -> Side | None:
    """:class:`Side` from an item table keyed by ``item_key`` and a user table keyed by
    ``user_key`` (either may be None), in the order of ``interactions``' ids."""
    if items is None and users is None:
        return None
    item_values, item_names = _numeric(items, item_key, interactions.items)
    user_values, user_names = _numeric(users, user_key, interactions.users)
    return Side(item_values, user_values, item_names, user_names)


def _numeric(table: pd.DataFrame | None, key: str, ids: pd.Index) -> tuple[np.ndarray, list]:
    if table is None:
        return np.zeros((len(ids), 0), dtype=np.float32), []
    if key not in table.columns:
        raise FunnelTrainError(
            f"the table keyed by {key!r} has no column {key!r}",
            hint=f"name the id column of data.items / data.users {key!r}, as in the interactions",
        )
    table = table.drop_duplicates(key).set_index(key).reindex(ids)
    columns, names = [], []
    for name in table.columns:
        values = table[name]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            columns.append(values.astype(float).to_numpy())
            names.append(name)
        elif values.nunique() <= 30:
            for level in sorted(map(str, values.dropna().unique())):
                columns.append((values.astype(str) == level).where(values.notna()).to_numpy(float))
                names.append(f"{name}_{level}")
    names = [re.sub(r"[^0-9A-Za-z_]+", "_", n) for n in names]  # LightGBM's feature names
    if not columns:
        return np.zeros((len(ids), 0), dtype=np.float32), []
    return np.column_stack(columns).astype(np.float32), names


def item_embeddings(matrix: sp.csr_matrix, dimensions: int = 32, seed: int = 0) -> np.ndarray:
    """Each item's interaction profile (its column of users) reduced to ``dimensions`` by a
    truncated SVD and L2-normalised: the dot product of two is their cosine similarity."""
    from sklearn.utils.extmath import randomized_svd

    d = max(1, min(dimensions, min(matrix.shape) - 1))
    _, s, vt = randomized_svd(matrix.astype(np.float64), d, random_state=seed)
    vectors = (vt.T * s).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _package(
    spec, workspace, interactions, factories, result, settings, side, times
) -> Path | None:
    from mlsd.models.packaging import spec_hash
    from mlsd.recsys.package import build

    arch = spec.architecture
    everything = interactions.matrix()
    if result.chosen == FUNNEL:
        funnel = Funnel(
            factories,
            candidates=arch.candidates,
            seed=spec.seed,
            side=side,
            latest_targets=_latest_targets(spec),
        ).fit(everything, times)
        fitted, ranker = funnel.generators, funnel.ranker
    else:
        fitted, ranker = {result.chosen: factories[result.chosen]().fit(everything, times)}, None
    recommender = assemble(
        interactions,
        everything,
        fitted,
        result.chosen,
        ranker,
        k=arch.k,
        candidates=arch.candidates,
        allowed=_allowed(spec, interactions.items),
        exclude_seen=arch.filters.exclude_seen,
        diversity=arch.filters.diversity,
        exploration=arch.filters.exploration,
        seed=spec.seed,
        side=side if result.chosen == FUNNEL else None,
    )
    chosen = next(e for e in result.leaderboard if e["name"] == result.chosen)
    folder = workspace.root / "packages" / f"{spec.name}-{result.snapshot}-{_stamp()}"
    return build(
        folder,
        recommender,
        params={n: settings.get(n, {}) for n in fitted},
        metrics={"test": chosen["test"], "valid": chosen["valid"], "stages": result.stages},
        meta={
            "system": spec.name,
            "task": "recommendation",
            "chosen": result.chosen,
            "family": result.chosen,
            "primary_metric": result.primary_metric,
            "snapshot": result.snapshot,
            "spec_hash": spec_hash(spec),
            "user": spec.problem.id,
            "item": spec.problem.target,
        },
        seed=spec.seed,
    )


def _stamp() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")


def _register(spec, workspace, result: FunnelResult, package: Path | None) -> None:
    from mlsd.events import EventLog
    from mlsd.models.packaging import spec_hash
    from mlsd.models.registry import Registry

    events = EventLog(workspace.root / "events.sqlite")
    registry = Registry(workspace, spec.name, spec.models.tracking_uri, events=events)
    chosen = next(e for e in result.leaderboard if e["name"] == result.chosen)
    metrics = {f"test.{k}": v for k, v in chosen["test"].items()}
    metrics.update({f"valid.{k}": v for k, v in chosen["valid"].items()})
    metrics.update(
        {f"candidate_recall.{k}": v for k, v in result.stages["candidate_recall"].items()}
    )
    result.run_id = registry.log_run(
        params={"chosen": result.chosen, "primary_metric": result.primary_metric},
        metrics=metrics,
        tags={"snapshot": result.snapshot, "spec_hash": spec_hash(spec), "registered": "True"},
        artifacts={
            "validation.json": workspace.reports / "validation.json",
            "evaluation.html": workspace.reports / "evaluation.html",
            "evaluation.json": workspace.reports / "evaluation.json",
        },
        text={
            "system.yaml": spec.path.read_text() if spec.path else "",
            "leaderboard.json": json.dumps(result.leaderboard, indent=1, default=str),
        },
    )
    if package is None:
        return
    registered = registry.register(package, result.run_id)
    result.package = str(package)
    result.registered = True
    result.model_version = registered["version"]
    result.alias = registered["alias"]
