"""Batch scoring and batch recommendations on Ray Data: the local engine's code, on a pool
of actors.

The input is read by Ray Data in blocks (Parquet files or a folder of them, or a CSV read
with every column as text, as the local engine reads it) and cut into chunks of
``serving.batch_rows`` rows. Each actor of the pool loads and verifies the model package
once (hashes and holdout replay, as the server does) and validates and scores the chunks it
is given with :class:`mlsd.serving.batch.Scorer`: the very code of the local engine, so the
answers are the same row for row. Ray keeps the chunks in input order; each comes back to
the driver as Arrow IPC bytes (scored rows and rejected rows), where
:func:`mlsd.serving.batch.predict_batch` writes the files as it does locally, under a
temporary name renamed at the end. Recommendations (``mlsd recommend --engine ray``) go the
same way: chunks of users to actors holding the verified recommender package, their lists
back in order to the driver, which writes the file.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from mlsd.engine.cluster import EngineError, connect, cpus, reason
from mlsd.serving.batch import Scored, Scorer, Source, csv_options
from mlsd.serving.recommend import BATCH, answer_users
from mlsd.spec import EngineSpec, ServingSpec

if TYPE_CHECKING:
    import pyarrow as pa

_FIELDS = ("rows", "flagged", "scored", "rejected")


def _pack(batch: pa.RecordBatch | None) -> bytes:
    import pyarrow as pa

    if batch is None:
        return b""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    """``table`` as one record batch (what the Scorer reads and IPC packs), empty included."""
    import pyarrow as pa

    columns = [column.combine_chunks() for column in table.columns]
    return pa.RecordBatch.from_arrays(columns, schema=table.schema)


def _unpack(data: bytes) -> pa.RecordBatch | None:
    import pyarrow as pa

    if not data:
        return None
    return pa.ipc.open_stream(pa.py_buffer(data)).read_next_batch()


class ScoreChunks:
    """A Ray Data actor: the model loaded and verified once, then one chunk per call."""

    def __init__(
        self,
        system: str,
        version: int | None,
        folder: str,
        serving: dict[str, Any],
        ids: list[str],
        from_csv: bool,
    ):
        from mlsd.serving.model import load_version

        settings = ServingSpec.model_validate(serving)
        served = load_version(system, version, folder, settings)
        self.scorer = Scorer(served, settings.on_invalid, ids)
        self.from_csv = from_csv

    def __call__(self, table: pa.Table) -> pa.Table:
        import pyarrow as pa

        scored = Scored.of(self.scorer, _one_batch(table), self.from_csv)
        return pa.table(
            {
                "rows": pa.array([scored.rows], pa.int64()),
                "flagged": pa.array([scored.flagged], pa.int64()),
                "scored": pa.array([_pack(scored.result)], pa.binary()),
                "rejected": pa.array([_pack(scored.rejected)], pa.binary()),
            }
        )


def on_ray(
    engine: EngineSpec, serving: ServingSpec
) -> Callable[[Source, Scorer], Iterator[Scored]]:
    """The Ray engine for :func:`mlsd.serving.batch.predict_batch`: scores the chunks of a
    source on the cluster ``engine`` names (joined, or started here) and yields them in
    input order."""

    def score(source: Source, scorer: Scorer) -> Iterator[Scored]:
        ray = _data(engine)
        files = [str(f) for f in source.files]
        if source.from_csv:
            data = ray.data.read_csv(
                files, **csv_options(source.path, source.names, source.batch_rows)
            )
        else:
            data = ray.data.read_parquet(files)
        served = scorer.served
        actors = engine.actors or max(1, cpus(ray) - 1)  # the driver keeps a CPU
        scored = data.map_batches(
            ScoreChunks,
            fn_constructor_kwargs={
                "system": served.name,
                "version": served.version,
                "folder": str(served.package.folder),
                "serving": serving.model_dump(mode="json"),
                "ids": scorer.ids,
                "from_csv": source.from_csv,
            },
            batch_size=source.batch_rows,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
            zero_copy_batch=True,
        )
        with _cluster_errors(ray, "batch scoring on Ray failed"):
            for block in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
                columns = [block.column(name).to_pylist() for name in _FIELDS]
                for rows, flagged, result, rejected in zip(*columns, strict=True):
                    yield Scored(rows, _unpack(result), _unpack(rejected), flagged)

    return score


def _data(engine: EngineSpec) -> Any:
    """``ray`` with Ray Data set up for mlsd's jobs: blocks kept in input order (the local
    engine's order, row for row), no progress bars of its own (mlsd shows one)."""
    ray = connect(engine)
    import ray.data  # noqa: F811 - the submodule of the ray connect() returned

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its failures still show
    return ray


@contextlib.contextmanager
def _cluster_errors(ray: Any, what: str) -> Iterator[None]:
    """A job's failure on the cluster as an :class:`EngineError` with the actor's reason."""
    try:
        yield
    except ray.exceptions.RayError as exc:
        raise EngineError(
            f"{what}: {reason(exc)}",
            hint="an actor's full traceback is in Ray's session logs "
            "(/tmp/ray/session_latest/logs); --engine local runs the same in this process",
        ) from exc


class RecommendChunks:
    """A Ray Data actor: the recommender package loaded and verified once, then one chunk of
    users per call."""

    def __init__(
        self, system: str, version: int | None, folder: str, serving: dict[str, Any],
        k: int | None, include_seen: bool,
    ):  # fmt: skip
        from mlsd.serving.model import load_version

        served = load_version(system, version, folder, ServingSpec.model_validate(serving))
        self.recommender = served.package.recommender
        self.k, self.include_seen = k, include_seen

    def __call__(self, table: pa.Table) -> pa.Table:
        import pyarrow as pa

        users = table.column("user").to_pylist()
        rows, cold = answer_users(self.recommender, users, self.k, self.include_seen)
        return pa.table(
            {
                "users": pa.array([len(users)], pa.int64()),
                "cold": pa.array([cold], pa.int64()),
                "rows": pa.array([_pack(_one_batch(rows))], pa.binary()),
            }
        )


def recommend_on_ray(
    engine: EngineSpec, serving: ServingSpec
) -> Callable[..., Iterator[tuple[int, pa.Table, int]]]:
    """The Ray engine for :func:`mlsd.serving.recommend.recommend_batch`: chunks of users
    answered on the cluster ``engine`` names, yielded in order as (users, rows, cold starts)."""

    def recommend(
        served: Any, users: list, k: int | None, include_seen: bool
    ) -> Iterator[tuple[int, pa.Table, int]]:
        import pyarrow as pa

        ray = _data(engine)
        actors = engine.actors or max(1, cpus(ray) - 1)
        blocks = max(1, min(len(users) // BATCH, 4 * actors))  # spread over the actors
        listed = ray.data.from_arrow(pa.table({"user": users})).repartition(blocks).map_batches(
            RecommendChunks,
            fn_constructor_kwargs={
                "system": served.name, "version": served.version,
                "folder": str(served.package.folder), "serving": serving.model_dump(mode="json"),
                "k": k, "include_seen": include_seen,
            },
            batch_size=BATCH, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1,
        )  # fmt: skip
        with _cluster_errors(ray, "recommending on Ray failed"):
            for block in listed.iter_batches(batch_size=None, batch_format="pyarrow"):
                columns = [block.column(name).to_pylist() for name in ("users", "rows", "cold")]
                for n, rows, cold in zip(*columns, strict=True):
                    yield n, pa.Table.from_batches([_unpack(rows)]), cold

    return recommend
