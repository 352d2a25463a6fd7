"""``mlsd train`` for a funnel (``architecture.kind: funnel``): validate the interactions,
split each user's, tune every generator on validation, let the honest gate choose between
the funnel and the best generator alone, measure everything once on test, package what was
chosen (refitted on every interaction) and register it.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mlsd.data.snapshot import load_dataset
from mlsd.errors import MlsdError
from mlsd.evaluation.metrics import get_metric
from mlsd.recsys.assemble import assemble
from mlsd.recsys.data import (
    allowed,
    interactions_of,
    pair_times,
    side_of,
    split,
    validate_funnel_data,
)
from mlsd.recsys.evaluate import (
    activity_segments,
    beyond_accuracy,
    ranking_scores,
    top_items,
)
from mlsd.recsys.funnel import Funnel, candidate_recall, choose
from mlsd.recsys.generators import GENERATORS, Generator
from mlsd.recsys.interactions import TEST, TRAIN, VALID
from mlsd.recsys.runtime import FUNNEL, Side
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
    from mlsd.models.train import training_lock

    workspace = workspace or Workspace.for_spec(spec)
    with training_lock(workspace, spec.name):  # one training of a system at a time
        stages = Stages(10, label=f"train {spec.name}", show=progress)
        try:
            return _train(spec, workspace, stages, data)
        finally:
            stages.close()


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
    when = pair_times(spec, frame, interactions, labels)

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
            targets=spec.split_method,
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


def _funnel(spec: SystemSpec, factories: dict, side: Side | None) -> Funnel:
    """The spec's funnel, its ranker's targets placed as the split places what is judged."""
    arch = spec.architecture
    return Funnel(
        factories, candidates=arch.candidates, seed=spec.seed, side=side, targets=spec.split_method
    )


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
    funnel = _funnel(spec, factories, side).fit(seen, times)
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
            allowed=allowed(spec, interactions.items),
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


def _package(
    spec, workspace, interactions, factories, result, settings, side, times
) -> Path | None:
    from mlsd.models.packaging import spec_hash
    from mlsd.recsys.package import build

    arch = spec.architecture
    everything = interactions.matrix()
    if result.chosen == FUNNEL:
        funnel = _funnel(spec, factories, side).fit(everything, times)
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
        allowed=allowed(spec, interactions.items),
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
