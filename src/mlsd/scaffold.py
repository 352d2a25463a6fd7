"""``mlsd init``: look at a data file and write a commented ``system.yaml`` for it."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import yaml

from mlsd.data.schema import infer_schema
from mlsd.data.sources import read_source
from mlsd.data.target import classes_of, positive_class
from mlsd.errors import DataError, MlsdError, did_you_mean
from mlsd.spec import (
    FeaturesSpec,
    ProblemSpec,
    SourceSpec,
    SplitSpec,
    SystemSpec,
    parse_spec,
)
from mlsd.tasks import BINARY, MULTICLASS, RANKING, REGRESSION, get_task


def infer_task(kind: str, n_classes: int) -> str:
    """The task a target column suggests: few values → classification, else regression."""
    if n_classes == 2:
        return BINARY.name
    if kind in ("categorical", "boolean") or (kind == "numeric" and n_classes <= 10):
        return MULTICLASS.name if n_classes > 2 else BINARY.name
    if kind == "numeric":
        return REGRESSION.name
    raise DataError(
        f"cannot predict a {kind} column",
        hint="pick a numeric or categorical target, or pass --task",
    )


# Step 9: what `mlsd retrain --if-needed` and `mlsd loop` act on. Without triggers nothing
# ever fires, so init writes the two that need no tuning, and shows the others commented.
RETRAINING = [
    "# Step 9: when to retrain (`mlsd retrain --if-needed`, `mlsd loop`). A trigger fires on the",
    "# champion's latest monitoring window; a retrain then needs fresh labelled rows (feedback).",
    "retraining:",
    "  triggers:",
    "    - drift                              # a drift alert on the served inputs or outputs",
    "    - performance                        # a performance alert: realised metric or guardrail",
    "    # - {schedule: 30d}                  # the champion is at least this old",
    "    # - {new_labels: 2000}               # this many labelled rows arrived since it was built",
    "  beat_champion_by: 0.0                  # margin a challenger needs over the champion",
    "",
]


def _scalar(value) -> str:
    """One YAML scalar, quoted when YAML would read it as something else."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _line(indent: int, key: str, value, comment: str | None) -> str:
    text = (
        f"{'  ' * indent}{key}: {_scalar(value)}" if value is not None else f"{'  ' * indent}{key}:"
    )
    return f"{text:<40} # {comment}" if comment else text


def _doc(model: type, field: str) -> str:
    return model.model_fields[field].description or ""


def render_spec(
    data: Path,
    target: str,
    *,
    out: Path,
    task: str | None = None,
    time: list[str] | None = None,
    entity: str | None = None,
    group: str | None = None,
    name: str | None = None,
) -> str:
    """The text of a commented system.yaml for ``data`` predicting ``target`` (ranked within
    ``group`` when given: a ranking task)."""
    base = out.parent.resolve()
    source = SourceSpec(path=str(data))
    table = read_source(source, Path.cwd())
    frame = table.to_pandas(strings_to_categorical=True)
    if target not in frame.columns:
        raise DataError(
            f"--target {target!r} is not a column of {data}{did_you_mean(target, frame.columns)}",
            hint=f"columns: {', '.join(map(str, frame.columns[:30]))}",
        )
    for col in [*(time or []), *(c for c in (entity, group) if c)]:
        if col not in frame.columns:
            raise DataError(
                f"column {col!r} is not in {data}{did_you_mean(col, frame.columns)}",
                hint="check --time, --id and --group",
            )
    if group and task not in (None, RANKING.name):
        raise DataError(f"--group ranks rows, but --task is {task}", hint="leave out --task")
    task = RANKING.name if group else task
    schema, typed = infer_schema(frame)
    classes = classes_of(typed[target])
    task = task or infer_task(schema.columns[target].type, len(classes))
    relative = os.path.relpath(Path(data).resolve(), base)
    sys_name = name or Path(data).stem.replace(" ", "-") or "system"
    split = "time" if time else get_task(task).default_split
    if not time and entity and typed[entity].duplicated().any():
        split = "group"  # an entity's rows in two splits would let a model recognise it
    for col in time or []:  # a time column is ordered, never an identifier
        if schema.columns[col].type == "identifier":
            schema.columns[col].type = "numeric"

    lines = [
        f"# {sys_name}: written by `mlsd init` on {date.today()} from {relative}.",
        "# Every key is documented in `mlsd schema`; sections not written here take defaults.",
        _line(0, "name", sys_name, _doc(SystemSpec, "name")),
        "",
        "# Step 1: the problem.",
        "problem:",
        _line(1, "task", task, _doc(ProblemSpec, "task")),
        _line(1, "target", target, _doc(ProblemSpec, "target")),
    ]
    if get_task(task).thresholded:
        stub = SystemSpec.model_validate(
            {"name": "x", "problem": {"task": task, "target": target}, "data": {"source": "x"}}
        )
        positive = positive_class(stub, classes)
        if positive is None:
            counts = typed[target].value_counts()
            positive = min(classes, key=lambda c: counts.get(c, 0))
        if isinstance(positive, float) and positive.is_integer():
            positive = int(positive)
        lines.append(_line(1, "positive_class", positive, _doc(ProblemSpec, "positive_class")))
    if group:
        lines.append(_line(1, "group", group, _doc(ProblemSpec, "group")))
    if entity:
        lines.append(_line(1, "id", entity, _doc(ProblemSpec, "id")))
    if time:
        lines.append(_line(1, "time", list(time), _doc(ProblemSpec, "time")))
    lines += [
        _line(1, "objective", "", "TODO: " + _doc(ProblemSpec, "objective")),
    ]
    if get_task(task).thresholded:  # costs choose a threshold: only a binary decision has one
        lines += [
            _line(1, "costs", None, "cost of each kind of mistake; they choose thresholds"),
            _line(2, "false_positive", 1.0, None),
            _line(2, "false_negative", 1.0, None),
        ]
    lines += [
        _line(1, "latency_budget_ms", 100, _doc(ProblemSpec, "latency_budget_ms")),
        "",
        "# Step 2: metrics.",
        "metrics:",
        _line(
            1, "primary", get_task(task).default_metric, "the offline metric that selects models"
        ),
        "",
        "# Step 4: data. Types below were inferred; add min/max or domain to make them a contract.",
        "data:",
        _line(1, "source", relative, _doc(SourceSpec, "path")),
        _line(1, "split", None, None),
        _line(2, "method", split, "random | stratified | time | group"),
        _line(2, "valid", 0.15, _doc(SplitSpec, "valid")),
        _line(2, "test", 0.15, _doc(SplitSpec, "test")),
        _line(
            1,
            "columns",
            None,
            "column: type (numeric | boolean | categorical | datetime | text | identifier)",
        ),
    ]
    lines += [
        _line(2, str(col), schema.columns[str(col)].type, None)
        for col in frame.columns
        if str(col) != target
    ]
    excluded = [c for c, s in schema.columns.items() if s.type == "identifier" and c != entity]
    lines += [
        "",
        "# Step 5: features. Exclude columns that are unknown at prediction time or leak the target.",
        "features:",
        _line(1, "exclude", excluded, _doc(FeaturesSpec, "exclude")),
        "",
        *RETRAINING,
    ]
    text = "\n".join(lines)
    try:
        parse_spec(text, file=str(out))
    except MlsdError as exc:  # a bug here, not the user's: say so plainly
        raise MlsdError(f"mlsd init produced an invalid spec: {exc.message}") from exc
    return text


def write_spec(data: Path, target: str, *, out: Path, force: bool = False, **options) -> Path:
    """Write :func:`render_spec`'s text to ``out``, refusing to overwrite unless ``force``."""
    if out.exists() and not force:
        raise MlsdError(
            f"{out} already exists", hint="pass --force to overwrite, or -o another path"
        )
    text = render_spec(data, target, out=out, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
