"""A recommender package: one folder holding every stage of a funnel without pickle,
verified and replayed on load like a model package (:mod:`mlsd.models.package`).

Layout written by :func:`build`::

    manifest.json              format, version, sha256 of every other file, meta, versions
    recommender.json           chosen ("funnel" or a generator), k, candidates, the
                               generators in order with their form and settings, the
                               ranker's features
    users.json, items.json     the ids behind the rows and columns of the arrays
    history/indptr.npy         every known user's items (CSR: indptr, indices)
    history/indices.npy
    generators/<name>/*.npy    each generator's fitted arrays (counts, weights, factors)
    generators/<name>/index.faiss  optional: its item vectors' ANN index (faiss's format)
    fallback/counts.npy        popularity, for users without history (cold start)
    features/popularity.npy    item popularity and user history-length percentiles
    features/history.npy
    ranker.txt                 the funnel's LightGBM ranker in LightGBM's text format
    allowed.npy                optional: the items the business rules let through
    embeddings.npy             optional: item vectors MMR compares items by
    side/items.npy, users.npy  optional: the item and user tables' features of the ranker
    metrics.json               offline evaluation figures
    holdout.json               some users and the answers recorded for them at build time

Loading imports numpy and LightGBM's C library only (it is on the serving path).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.events import utc_now
from mlsd.models.package import (
    MANIFEST,
    MODIFIED,
    PackageError,
    build_atomically,
    find_pickles,
    json_bytes,
    read_json,
    read_manifest,
    runtime_versions,
    sha256_file,
    verify_files,
    walk_files,
)
from mlsd.recsys.runtime import FUNNEL, Counts, Recommender, Side, feature_names, scorer
from mlsd.workspace import atomic_write_bytes

FORMAT = "mlsd.recommender"
VERSION = 1
CONFIG = "recommender.json"
RANKER = "ranker.txt"
HOLDOUT = "holdout.json"
INDEX = "index.faiss"  # a generator's nearest-neighbour index, in faiss's own format
METRICS = "metrics.json"
SCORE_RTOL = 1e-6  # same code and arrays give the same floats; this absorbs BLAS threading


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def _load(folder: Path, name: str) -> np.ndarray:
    try:
        return np.load(folder / name, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PackageError(f"{name} of {folder} cannot be read: {exc}", hint=MODIFIED) from exc


def _ids(values: list) -> list:
    """Ids as JSON keeps them: numpy scalars become Python ones."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def build(
    folder: str | Path,
    recommender: Recommender,
    *,
    params: Mapping[str, Mapping[str, Any]],
    metrics: Mapping[str, Any],
    meta: Mapping[str, Any],
    holdout_users: int = 50,
    seed: int = 0,
) -> Path:
    """Write ``recommender`` to ``folder`` (which must not exist), load it back, replay the
    holdout, and only then move it into place; return its path.

    ``params`` gives each generator's settings (for the record). ``holdout_users`` users
    (seeded) are answered now and again on every load.
    """

    def write_and_check(tmp: Path) -> None:
        _write(tmp, recommender, params, metrics, meta, holdout_users, seed)
        load(tmp)  # refuse a package that would not load and answer the same

    return build_atomically(folder, write_and_check)


def _write(tmp, rec: Recommender, params, metrics, meta, holdout_users, seed):
    config = {
        "chosen": rec.chosen,
        "k": rec.k,
        "candidates": rec.candidates,
        "exclude_seen": rec.exclude_seen,
        "diversity": rec.diversity,
        "exploration": rec.exploration,
        # a list: the ranker's features follow this order (JSON objects' keys get sorted)
        "generators": [
            {
                "name": name,
                "form": g.form,
                "params": dict(params.get(name, {})),
                "index": g.index.describe() if getattr(g, "index", None) is not None else None,
            }
            for name, g in rec.generators.items()
        ],
        "features": feature_names(list(rec.generators), rec.side) if rec.chosen == FUNNEL else [],
        "side": {"items": rec.side.item_names, "users": rec.side.user_names} if rec.side else None,
    }
    atomic_write_bytes(tmp / CONFIG, json_bytes(config, "the recommender settings"))
    atomic_write_bytes(tmp / "users.json", json_bytes(_ids(list(rec.users)), "the user ids"))
    atomic_write_bytes(tmp / "items.json", json_bytes(_ids(list(rec.items)), "the item ids"))
    _save(tmp / "history/indptr.npy", rec.indptr.astype(np.int64))
    _save(tmp / "history/indices.npy", rec.indices.astype(np.int64))
    for name, generator in rec.generators.items():
        for key, array in generator.arrays().items():
            _save(tmp / f"generators/{name}/{key}.npy", array)
        index = getattr(generator, "index", None)
        if index is not None:  # faiss's own format; its nprobe and recall in the config
            index.save(tmp / f"generators/{name}/{INDEX}")
    _save(tmp / "fallback/counts.npy", rec.fallback.counts)
    _save(tmp / "features/popularity.npy", rec.popularity.astype(np.float32))
    _save(tmp / "features/history.npy", rec.history.astype(np.float32))
    if rec.chosen == FUNNEL:
        atomic_write_bytes(tmp / RANKER, rec.ranker.model_to_string().encode())
    if rec.allowed is not None:
        _save(tmp / "allowed.npy", rec.allowed.astype(bool))
    if rec.embeddings is not None:
        _save(tmp / "embeddings.npy", rec.embeddings.astype(np.float32))
    if rec.side is not None:
        _save(tmp / "side/items.npy", rec.side.items)
        _save(tmp / "side/users.npy", rec.side.users)
    atomic_write_bytes(tmp / METRICS, json_bytes(metrics, "the metrics"))
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(rec.users), size=min(holdout_users, len(rec.users)), replace=False)
    users = [*_ids([rec.users[i] for i in sorted(picked)]), "__mlsd_unknown_user__"]
    answers = rec.recommend(users)
    atomic_write_bytes(tmp / HOLDOUT, json_bytes({"answers": answers}, "the holdout"))
    stray = find_pickles(tmp)
    if stray:
        raise PackageError(f"pickled file(s) in {tmp}: {stray}", hint="save arrays as .npy")
    files = {p.relative_to(tmp).as_posix(): sha256_file(p, sync=True) for p in walk_files(tmp)}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "files": files,
        "created_at": utc_now(),
        "meta": dict(meta),
        "packages": runtime_versions(),
    }
    atomic_write_bytes(tmp / MANIFEST, json_bytes(manifest, "the manifest meta"))


class RecommenderPackage:
    """A loaded, verified recommender package."""

    def __init__(self, folder: Path, manifest: dict, recommender: Recommender, metrics: dict):
        self.folder, self.manifest = folder, manifest
        self.recommender, self.metrics = recommender, metrics

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest.get("meta", {})

    def __repr__(self) -> str:
        return f"RecommenderPackage({str(self.folder)!r}, chosen={self.recommender.chosen!r})"


def load(folder: str | Path, *, verify: bool = True) -> RecommenderPackage:
    """Load the recommender package in ``folder``: every hash checked, unlisted and pickled
    files refused, and the holdout answered again (with ``verify``, the default)."""
    folder = Path(folder).absolute()
    manifest = read_manifest(folder, FORMAT, VERSION)
    if find_pickles(folder):
        raise PackageError(f"{folder} holds pickled files; mlsd never loads them", hint=MODIFIED)
    if verify:
        verify_files(folder, manifest["files"])
    config = read_json(folder / CONFIG, folder)
    generators = {}
    for declared in config["generators"]:
        name = declared["name"]
        arrays: dict[str, Any] = {
            p.stem: _load(folder, f"generators/{name}/{p.name}")
            for p in sorted((folder / "generators" / name).glob("*.npy"))
        }
        if declared.get("index"):
            from mlsd.recsys.retrieval import IVFIndex

            described = declared["index"]
            arrays["index"] = IVFIndex.load(
                folder / "generators" / name / INDEX,
                described["nprobe"],
                described["recall"],
                described["recall_at"],
            )
        try:
            generators[name] = scorer(declared["form"], arrays)
        except (KeyError, TypeError) as exc:
            raise PackageError(f"generator {name} of {folder}: {exc}", hint=MODIFIED) from exc
    ranker = None
    if config["chosen"] == FUNNEL:
        from mlsd.models.lgbm_runtime import Booster

        ranker = Booster.from_string((folder / RANKER).read_text())
    allowed = _load(folder, "allowed.npy") if (folder / "allowed.npy").exists() else None
    embeddings = _load(folder, "embeddings.npy") if (folder / "embeddings.npy").exists() else None
    side = None
    if config.get("side"):
        side = Side(
            _load(folder, "side/items.npy"),
            _load(folder, "side/users.npy"),
            list(config["side"]["items"]),
            list(config["side"]["users"]),
        )
    recommender = Recommender(
        users=read_json(folder / "users.json", folder),
        items=read_json(folder / "items.json", folder),
        indptr=_load(folder, "history/indptr.npy"),
        indices=_load(folder, "history/indices.npy"),
        generators=generators,
        chosen=config["chosen"],
        k=int(config["k"]),
        candidates=int(config["candidates"]),
        popularity=_load(folder, "features/popularity.npy"),
        history=_load(folder, "features/history.npy"),
        fallback=Counts(_load(folder, "fallback/counts.npy")),
        ranker=ranker,
        allowed=allowed,
        exclude_seen=bool(config["exclude_seen"]),
        diversity=float(config["diversity"]),
        exploration=float(config["exploration"]),
        embeddings=embeddings,
        side=side,
    )
    package = RecommenderPackage(folder, manifest, recommender, read_json(folder / METRICS, folder))
    if verify:
        replay(package)
    return package


def replay(package: RecommenderPackage) -> None:
    """Answer the holdout users again; refuse the package on any different item or score."""
    recorded = read_json(package.folder / HOLDOUT, package.folder)["answers"]
    got = package.recommender.recommend([a["user"] for a in recorded])
    for want, have in zip(recorded, got, strict=True):
        same = [w["item"] for w in want["items"]] == [h["item"] for h in have["items"]]
        close = same and np.allclose(
            [w["score"] for w in want["items"]],
            [h["score"] for h in have["items"]],
            rtol=SCORE_RTOL,
            atol=1e-9,
        )
        if not close:
            raise PackageError(
                f"replaying {HOLDOUT} of {package.folder} gave user {want['user']!r} "
                f"{json.dumps(have['items'][:3])[:300]}…, recorded "
                f"{json.dumps(want['items'][:3])[:300]}…",
                hint="the arrays or the ranker no longer compute what was recorded (edited "
                "files, or a different LightGBM); rebuild or re-register the package",
            )
