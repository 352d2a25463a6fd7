"""``mlsd retrain`` for a recommender funnel: the interactions source read again plus every
positive feedback on a served recommendation (a click is an interaction), the funnel
trained on them as ``mlsd train`` does, and the challenger judged against the champion.

The comparison is on what is new to the champion: the challenger's test users and, of
each one's held-out interactions, those the champion's package does not hold (it could
not have learnt from them) and that are not clicks on its own recommendations (it chose
those items, so they would favour it: the feedback loop). The champion answers from its own package, as it serves; the
challenger's lists are those of its test evaluation (fitted without the test split).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlsd.loop.data import Champion
from mlsd.spec import SystemSpec
from mlsd.workspace import Workspace


def fresh_interactions(spec: SystemSpec, ws: Workspace) -> tuple[Any, dict[str, Any], set]:
    """The source's interactions and the positive feedback of the log, as one table with
    the source's columns (a feedback row fills the user, the item and the time); what it
    holds; and the (user, item) pairs that came from the log."""
    import pyarrow as pa

    from mlsd.data.sources import read_source
    from mlsd.monitoring.recommendations import positive
    from mlsd.predlog.reader import labelled

    source = read_source(spec.data.source, spec.base_dir)
    log = labelled(ws).to_pandas()
    log = log[log["true_label"].map(positive)] if len(log) else log
    user, item = spec.problem.id, spec.problem.target
    columns = {}
    for name in source.column_names:
        kind = source.schema.field(name).type
        if name == user and len(log):
            values = log["group"].tolist() if "group" in log else log["user"].tolist()
        elif name == item and len(log):
            values = log["item"].tolist()
        elif spec.problem.time and name == spec.problem.time[0] and len(log):
            values = log["ts"].astype("int64").tolist()
        else:
            values = [None] * len(log)
        columns[name] = pa.array(values).cast(kind) if len(log) else pa.array([], kind)
    extra = pa.table(columns, schema=source.schema)
    table = pa.concat_tables([source, extra])
    counts = {
        "train_rows": table.num_rows,
        "train_rows_from_log": extra.num_rows,
        "holdout_rows": 0,
    }
    clicked = set(zip(extra.column(user).to_pylist(), extra.column(item).to_pylist(), strict=True))
    data = {"counts": counts, "window": "every interaction, with positive feedback"}
    return table, data, clicked


def compare_on_new(
    champ: Champion,
    test_lists: dict,
    k: int,
    metric: str,
    seed: int = 0,
    clicked: set | None = None,
) -> dict[str, Any]:
    """Champion against challenger on the challenger's test items the champion never saw,
    with a paired bootstrap interval of the difference over users. Items ``clicked`` in
    the champion's own recommendations are left out of the judging: the champion chose
    them, so they would favour it (they still train the challenger)."""
    from mlsd.loop.compare import BOOTSTRAP, LEVEL
    from mlsd.recsys import package as recommenders
    from mlsd.recsys.evaluate import judge

    rec = recommenders.load(champ.package).recommender
    users = list(test_lists)
    answers = rec.recommend(users, k)
    champion, challenger = [], []
    for user, answer in zip(users, answers, strict=True):
        listed, held = test_lists[user]
        row = rec.user_index.get(user)
        known = set() if row is None else {rec.items[c] for c in rec.history_of(row)}
        new = [i for i in held if i not in known and (user, i) not in (clicked or ())]
        if new:  # a user with nothing new to the champion says nothing about either
            champion.append(([i["item"] for i in answer["items"]], new))
            challenger.append((listed[:k], new))
    out: dict[str, Any] = {"metric": metric, "direction": "max", "n_holdout": len(champion)}
    if not champion:
        return {**out, "champion": None, "challenger": None}
    names = list(dict.fromkeys([metric, f"ndcg@{k}", f"recall@{k}", f"hit_rate@{k}", f"mrr@{k}"]))
    out["champion_metrics"] = judge(champion, names, n=k)
    out["challenger_metrics"] = judge(challenger, names, n=k)
    out["champion"] = out["champion_metrics"][metric]
    out["challenger"] = out["challenger_metrics"][metric]
    per_user = np.array(
        [
            judge([b], [metric], n=k)[metric] - judge([a], [metric], n=k)[metric]
            for a, b in zip(champion, challenger, strict=True)
        ]
    )
    rng = np.random.default_rng(seed)
    means = per_user[rng.integers(0, len(per_user), (BOOTSTRAP, len(per_user)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return {
        **out,
        "ci_low": float(low),
        "ci_high": float(high),
        "level": LEVEL,
        "bootstrap": BOOTSTRAP,
    }


def retrain_funnel(spec: SystemSpec, ws: Workspace, champ: Champion, result: Any, *, progress):
    """Fill ``result`` (a :class:`mlsd.loop.retrain.RetrainResult`) for a funnel."""
    from mlsd.evaluation.metrics import get_metric
    from mlsd.recsys.train import train_funnel

    table, result.data, clicked = fresh_interactions(spec, ws)
    trained = train_funnel(spec, ws, progress=progress, data=table)
    result.trained = True
    report = ws.reports / "validation.json"  # train_funnel wrote it; it stops on a blocking one
    result.validation = {"passed": True, "snapshot": trained.snapshot, "report": str(report)}
    result.training = {
        "run_id": trained.run_id,
        "model_version": trained.model_version,
        "package": trained.package,
        "chosen": trained.chosen,
        "registered": trained.registered,
        "snapshot": trained.snapshot,
    }
    result.challenger_version = trained.model_version
    k = get_metric(trained.primary_metric).k or spec.architecture.k
    cmp = compare_on_new(champ, trained.test_lists, k, trained.primary_metric, spec.seed, clicked)
    margin = spec.retraining.beat_champion_by
    if cmp["champion"] is None:
        return ["none of the test interactions is new to the champion: nothing to compare on"]
    cmp["difference"] = cmp["challenger"] - cmp["champion"]
    cmp.update(beats=bool(cmp["difference"] > margin), margin=margin)
    result.comparison = cmp
    result.data["counts"]["holdout_rows"] = cmp["n_holdout"]
    if cmp["beats"]:
        return []
    return [
        f"the challenger's {cmp['metric']} {cmp['challenger']:.4g} on the interactions of "
        f"{cmp['n_holdout']:,} users new to the champion does not beat the champion's "
        f"{cmp['champion']:.4g} by retraining.beat_champion_by = {margin:g}"
    ]
