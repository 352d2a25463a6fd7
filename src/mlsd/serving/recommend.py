"""Recommendations from a recommender package: loading one by alias, version or folder,
and ``mlsd recommend``, every user's list written as one row per (user, item)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsd.errors import MlsdError
from mlsd.recsys.package import RecommenderPackage
from mlsd.serving.model import ServedRecommender, ServingError, load_served
from mlsd.spec import SystemSpec
from mlsd.stages import progress_bar
from mlsd.workspace import Workspace

if TYPE_CHECKING:
    import pyarrow as pa

BATCH = 256  # users answered at once


def load_recommender(spec: SystemSpec, ref: str | int) -> ServedRecommender:
    """The recommender ``ref`` (an alias, a version number or a package folder) names."""
    served = load_served(Workspace.for_spec(spec).root, spec.name, ref, spec.serving)
    if not isinstance(served, ServedRecommender):
        raise ServingError(
            f"version {served.label} of {spec.name} is a {served.task.name} model, not a "
            "recommender",
            hint="recommendations come from a system with architecture.kind: funnel; score "
            "this one with mlsd predict",
        )
    return served


def _users(which: str, spec: SystemSpec, package: RecommenderPackage) -> list:
    """``all`` known users, or the user column (``problem.id``, else the first) of a file."""
    if which == "all":
        return list(package.recommender.users)
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = Path(which)
    if not path.is_file():
        raise MlsdError(
            f"--users {which}: no such file",
            hint="pass `all`, or a CSV or Parquet file with a column of user ids",
        )
    table = pq.read_table(path) if path.suffix == ".parquet" else pcsv.read_csv(path)
    column = spec.problem.id if spec.problem.id in table.column_names else table.column_names[0]
    return table.column(column).to_pylist()


def answer_users(
    recommender: Any, users: list, k: int | None, include_seen: bool
) -> tuple[pa.Table, int]:
    """One chunk of users' lists as rows (user, item, rank, score, stage), and how many of
    the users were cold starts."""
    import pyarrow as pa

    columns: dict[str, list] = {"user": [], "item": [], "rank": [], "score": [], "stage": []}
    cold = 0
    for answer in recommender.recommend(users, k, include_seen=include_seen):
        cold += answer["cold_start"]
        for rank, entry in enumerate(answer["items"], 1):
            columns["user"].append(answer["user"])
            columns["item"].append(entry["item"])
            columns["rank"].append(rank)
            columns["score"].append(entry["score"])
            columns["stage"].append(entry["stage"])
    return pa.table(columns), int(cold)


def recommend_here(
    served: ServedRecommender, users: list, k: int | None, include_seen: bool
) -> Iterator[tuple[int, pa.Table, int]]:
    """The local engine: each chunk of ``BATCH`` users answered in this process, in order, as
    (users, rows, cold starts)."""
    for start in range(0, len(users), BATCH):
        chunk = users[start : start + BATCH]
        yield (len(chunk), *answer_users(served.package.recommender, chunk, k, include_seen))


def recommend_batch(
    spec: SystemSpec,
    users: str,
    output: Path,
    *,
    ref: str | int = "champion",
    k: int | None = None,
    include_seen: bool = False,
    progress: bool | None = None,
    engine: Callable[..., Iterator[tuple[int, pa.Table, int]]] = recommend_here,
) -> dict[str, Any]:
    """Write every user's top ``k`` (default: the package's) to ``output`` (Parquet or CSV):
    one row per user and item with its rank (1 = best), score and the stage that proposed
    it. Items the user already has are left out unless ``include_seen``. ``engine`` answers
    the users chunk by chunk, in order: :func:`recommend_here`, or
    :func:`mlsd.engine.ray_batch.recommend_on_ray` on a Ray cluster."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    served = load_recommender(spec, ref)
    package = served.package
    wanted = _users(users, spec, package)
    parts: list[pa.Table] = []
    cold = 0
    started = time.perf_counter()
    with progress_bar(len(wanted), "recommend", unit="users", show=progress) as bar:
        for n, rows, cold_starts in engine(served, wanted, k, include_seen):
            parts.append(rows)
            cold += cold_starts
            bar.update(n)
    seconds = time.perf_counter() - started
    if parts:
        table = pa.concat_tables(parts, promote_options="default")
    else:
        table = answer_users(package.recommender, [], k, include_seen)[0]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.writing")
    if output.suffix == ".csv":
        pcsv.write_csv(table, tmp)
    else:
        pq.write_table(table, tmp)
    tmp.replace(output)  # a crash never leaves half a file under the name asked for
    return {
        "model_version": served.label,
        "chosen": package.recommender.chosen,
        "users": len(wanted),
        "cold_start": int(cold),
        "rows": table.num_rows,
        "seconds": round(seconds, 3),
        "users_per_s": round(len(wanted) / seconds, 1) if seconds > 0 else None,
        "output": str(output),
    }


# --- POST /v1/recommend ---------------------------------------------------------------------

MAX_K = 1000


INT64 = (-(2**63), 2**63 - 1)  # ids are logged, and the log holds 64-bit integers


def _id(value: Any) -> Any:
    """An id as sent: a string, or an integer within 64 bits (JSON's 3.0 is the integer 3);
    None when it is neither."""
    if isinstance(value, float):  # JSON's 3.0, or an integer beyond what the parser keeps
        if not value.is_integer() or abs(value) >= 2.0**63:
            return None
        value = int(value)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]:
        return value
    return None


def recommend_request(payload: Any) -> tuple[Any, int | None, list, dict]:
    """``(user, k, exclude, context)`` of a ``/v1/recommend`` body; a body that is not one
    raises :class:`RecommendRequestError` naming each wrong field."""
    if not isinstance(payload, dict) or "user" not in payload:
        raise RecommendRequestError(400, 'expected {"user": <id>, "k": <n>, "exclude": [...]}')
    user, k = _id(payload["user"]), payload.get("k")
    exclude, context = payload.get("exclude"), payload.get("context")
    exclude = [] if exclude is None else exclude  # null means none, false does not
    context = {} if context is None else context
    problems = []
    if user is None:
        problems.append(("user", f"expected a string or a 64-bit integer, got {payload['user']!r}"))
    if isinstance(k, float) and k.is_integer():
        k = int(k)  # JSON's 3.0 is the integer 3
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K):
        problems.append(("k", f"expected an integer from 1 to {MAX_K}, got {k!r}"))
    if isinstance(exclude, list):
        exclude = [_id(i) for i in exclude]
    if not isinstance(exclude, list) or any(i is None for i in exclude):
        problems.append(("exclude", "expected a list of item ids (strings or 64-bit integers)"))
    if not isinstance(context, dict):
        problems.append(("context", f"expected an object, got {type(context).__name__}"))
    if problems:
        raise RecommendRequestError(
            422,
            "the recommendation request is malformed",
            [{"instance": None, "field": f, "problem": p[:200]} for f, p in problems],
        )
    return user, k, exclude, context


class RecommendRequestError(Exception):
    """A ``/v1/recommend`` body that cannot be answered: its status, message and details."""

    def __init__(self, status: int, message: str, details: list | None = None):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details or []


ID_SCHEMA = {
    "anyOf": [{"type": "string"}, {"type": "integer", "minimum": INT64[0], "maximum": INT64[1]}]
}
RECOMMEND_REQUEST = {
    "type": "object",
    "required": ["user"],
    "properties": {
        "user": {**ID_SCHEMA, "description": "the user's id (problem.id)"},
        "k": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_K,
            "description": "how many items (default: architecture.k)",
        },
        "exclude": {
            "type": ["array", "null"],
            "items": ID_SCHEMA,
            "description": "items never to recommend in this answer",
        },
        "context": {
            "type": ["object", "null"],
            "description": "the request's context, logged with the recommendation",
        },
    },
}
RECOMMEND_RESPONSE = {
    "type": "object",
    "required": ["model_version", "request_id", "user", "items", "cold_start"],
    "properties": {
        "model_version": {"type": "string"},
        "request_id": {"type": "string"},
        "user": ID_SCHEMA,
        "cold_start": {
            "type": "boolean",
            "description": "the user has no history: the most popular items are recommended",
        },
        "items": {
            "type": "array",
            "description": "best first; feedback names an item by its position (0-based) "
            "as the instance",
            "items": {
                "type": "object",
                "required": ["item", "score", "stage"],
                "properties": {
                    "item": ID_SCHEMA,
                    "score": {"type": "number"},
                    "stage": {"type": "string", "description": "what proposed the item"},
                },
            },
        },
    },
}
