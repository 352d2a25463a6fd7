"""The ModelPackage: one folder holding everything needed to serve a model, verified on load.

Layout written by :func:`build`::

    manifest.json          format, version, sha256 of every other file, meta, package versions
    signature.json         input columns (types, domains, ranges) and the output, from the caller
    featurizer.json        the fitted featurizer (plain JSON)
    model/                 the model in its native non-pickle form (model.json + native files)
    metrics.json           offline evaluation figures
    calibration.json       optional: the probability calibrator applied after the model
    reference/profile.json reference profile that monitoring compares traffic with
    holdout.parquet        holdout input columns plus the outputs recorded at build time

:func:`load` verifies every hash, refuses unlisted files and anything pickled, then replays the
holdout: a package whose outputs differ from the recorded ones is refused. Loading imports
numpy, pyarrow and the model's own runtime only (no pandas, scikit-learn or MLflow): it is on
the serving path.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.errors import MlsdError
from mlsd.events import jsonable, utc_now
from mlsd.features.featurizer import FittedFeaturizer
from mlsd.features.stacked import featurizer_from_json
from mlsd.models.base import Model
from mlsd.models.calibrator import CalibrationError, Calibrator
from mlsd.workspace import atomic_write_bytes

FORMAT = "mlsd.package"
VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "signature.json"
FEATURIZER = "featurizer.json"
MODEL_DIR = "model"
METRICS = "metrics.json"
CALIBRATION = "calibration.json"
PROFILE = "reference/profile.json"
HOLDOUT = "holdout.parquet"
EXPECTED = "__expected__"  # regression and binary: one column of recorded outputs
EXPECTED_PREFIX = "__expected"  # multiclass: __expected_0__, __expected_1__, …
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".cloudpickle", ".dill")
RTOL, ATOL = 1e-9, 1e-12  # replay tolerance: same code, same inputs, same floats
MODIFIED = "the package was modified after it was built; rebuild or re-register it"
# Model runtimes whose version the manifest records when they are installed.
_RUNTIMES = ("lightgbm", "xgboost", "catboost")


class PackageError(MlsdError):
    """A model package cannot be built, or is not the package that was built."""

    headline = "invalid model package"


def model_loader(folder: Path) -> Model:
    """Load the saved model in ``folder`` through the model families (imported lazily, so
    loading a package imports only the family it needs; tests may replace this function)."""
    from mlsd.models.families import load_model

    return load_model(folder)


# --- helpers ------------------------------------------------------------------------------------


def sha256_file(path: Path, *, sync: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
        if sync:  # build: every file is on disk before the folder is renamed into place
            os.fsync(handle.fileno())
    return digest.hexdigest()


def format_of(folder: str | Path) -> str | None:
    """The ``format`` a package folder's manifest declares (None without a readable one):
    which loader opens it."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest.get("format") if isinstance(manifest, dict) else None


def json_bytes(obj: Any, what: str) -> bytes:
    """Stable, strict JSON bytes (sorted keys; NaN becomes null) or PackageError naming it."""
    try:
        text = json.dumps(jsonable(obj, strict=True), indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PackageError(
            f"{what} is not JSON-serializable: {exc}",
            hint=f"pass {what} as plain dicts, lists, strings and numbers",
        ) from exc
    return (text + "\n").encode()


def read_json(path: Path, folder: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PackageError(
            f"{path.relative_to(folder)} is missing from {folder}", hint=MODIFIED
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackageError(
            f"{path.relative_to(folder)} in {folder} is not valid JSON: {exc}", hint=MODIFIED
        ) from exc


def walk_files(folder: Path) -> list[Path]:
    """Every file and symlink under ``folder`` (symlinks are not followed)."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        base = Path(root)
        found += [base / name for name in files]
        found += [base / name for name in dirs if (base / name).is_symlink()]
    return sorted(found)


def _is_pickle(path: Path) -> bool:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    # pickle protocols 2-5 start with the PROTO opcode 0x80 and the protocol number
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def find_pickles(folder: str | Path) -> list[Path]:
    """Files under ``folder`` that are pickles, by name (.pkl, .pickle, .joblib, …) or by
    content (a pickle protocol header). A package must have none."""
    return [path for path in walk_files(Path(folder)) if path.is_file() and _is_pickle(path)]


def runtime_versions() -> dict[str, str]:
    """Versions of what the package was built with: Python, numpy, pyarrow, mlsd, and the
    model runtimes installed (e.g. lightgbm), read from metadata without importing them."""
    versions = {"python": platform.python_version()}
    for name in ("numpy", "pyarrow", "mlsd", *_RUNTIMES):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


# --- holdout ------------------------------------------------------------------------------------


def _holdout_table(holdout: Mapping[str, Any], featurizer: FittedFeaturizer) -> Any:
    """The caller's holdout columns as an Arrow table, round-tripped through Parquet so the
    build computes its expected outputs from exactly what load will read back."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [str(name) for name in holdout.keys()]  # noqa: SIM118 (DataFrames too)
    clash = [name for name in names if name.startswith(EXPECTED_PREFIX)]
    if clash:
        raise PackageError(
            f"holdout column(s) {', '.join(map(repr, clash))} use the reserved prefix "
            f"{EXPECTED_PREFIX!r}",
            hint="rename the column(s)",
        )
    missing = [name for name in featurizer.input_columns if name not in names]
    if missing:
        raise PackageError(
            f"the holdout lacks the input column(s) {', '.join(map(repr, missing))}",
            hint="pass every column of featurizer.input_columns in holdout",
        )
    arrays = {}
    for name in names:
        try:  # from_pandas: NaN in object columns is missing, not a float among strings
            array = pa.array(holdout[name], from_pandas=True)
            if pa.types.is_timestamp(array.type) and array.type.unit == "ns":
                # as Python values, nanoseconds need pandas; the featurizer reads ms anyway
                array = array.cast(pa.timestamp("us", array.type.tz), safe=False)
            arrays[name] = array
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise PackageError(
                f"holdout column {name!r} cannot be stored in Parquet: {exc}",
                hint="pass numbers, strings, booleans or datetimes (one type per column)",
            ) from exc
    table = pa.table(arrays)
    if table.num_rows == 0:
        raise PackageError(
            "the holdout has no rows, so the package could not be checked on load",
            hint="pass a few hundred rows of the test split as holdout",
        )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return pq.ParquetFile(pa.BufferReader(sink.getvalue())).read()


def _inputs(table: Any, featurizer: FittedFeaturizer) -> dict[str, list]:
    """The featurizer's input columns of an Arrow table as Python lists, the form an online
    request has. (Arrow's own numpy conversion imports pandas, which serving must not.)"""
    return {name: table.column(name).to_pylist() for name in featurizer.input_columns}


def _expected_columns(predictions: np.ndarray) -> dict[str, np.ndarray]:
    if predictions.ndim == 1:
        return {EXPECTED: predictions}
    return {f"{EXPECTED_PREFIX}_{i}__": predictions[:, i] for i in range(predictions.shape[1])}


def _split_expected(table: Any) -> tuple[Any, np.ndarray]:
    """The inputs and the recorded outputs (a vector, or a matrix for multiclass)."""
    names = table.column_names
    if EXPECTED in names:
        expected = np.asarray(table.column(EXPECTED).to_pylist(), dtype=np.float64)
        return table.drop_columns([EXPECTED]), expected
    columns = []
    while f"{EXPECTED_PREFIX}_{len(columns)}__" in names:
        columns.append(f"{EXPECTED_PREFIX}_{len(columns)}__")
    if not columns:
        raise PackageError(f"{HOLDOUT} has no recorded outputs ({EXPECTED})", hint=MODIFIED)
    expected = np.column_stack(
        [np.asarray(table.column(c).to_pylist(), dtype=np.float64) for c in columns]
    )
    return table.drop_columns(columns), expected


# --- build ------------------------------------------------------------------------------------


def build(
    folder: str | Path,
    *,
    model: Model,
    featurizer: FittedFeaturizer,
    signature: Mapping[str, Any],
    metrics: Mapping[str, Any],
    profile: Mapping[str, Any],
    holdout: Mapping[str, Any],
    meta: Mapping[str, Any],
    calibration: Calibrator | None = None,
) -> Path:
    """Write a verified package to ``folder`` (which must not exist) and return its path.

    ``calibration`` (binary tasks) maps the model's probability to a calibrated one; the
    package applies it after the model everywhere it predicts, holdout replay included.

    Everything is written into a temporary sibling folder, checked by loading it back and
    replaying the holdout, and only then renamed into place: a crash or a failed check
    never leaves a package (complete or not) under ``folder``.
    """

    def write_and_check(tmp: Path) -> None:
        _write(
            tmp,
            model=model,
            featurizer=featurizer,
            signature=signature,
            metrics=metrics,
            profile=profile,
            holdout=holdout,
            meta=meta,
            calibration=calibration,
        )
        # Refuse to create a package that would not load: the model must read back from its
        # own files and reproduce the recorded outputs (catches lossy save/load at build time).
        _open(tmp, verify=True, loader=type(model).load)

    return build_atomically(folder, write_and_check)


def build_atomically(folder: str | Path, write_and_check: Callable[[Path], None]) -> Path:
    """Run ``write_and_check`` on a temporary sibling of ``folder`` (which must not exist),
    then rename it into place: a crash or a failed check never leaves a package (complete
    or not) under ``folder``. Returns the package's path."""
    folder = Path(folder).absolute()
    if folder.exists():
        raise PackageError(
            f"{folder} already exists",
            hint="packages are immutable: build into a new folder, or delete the old one",
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.building-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        write_and_check(tmp)
        try:
            os.rename(tmp, folder)
        except OSError as exc:
            raise PackageError(
                f"cannot move the built package to {folder}: {exc.strerror}",
                hint="another build may have created the folder meanwhile; build into a new one",
            ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(folder.parent)
    return folder


def _write(
    tmp: Path,
    *,
    model: Model,
    featurizer: FittedFeaturizer,
    signature: Mapping[str, Any],
    metrics: Mapping[str, Any],
    profile: Mapping[str, Any],
    holdout: Mapping[str, Any],
    meta: Mapping[str, Any],
    calibration: Calibrator | None = None,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    atomic_write_bytes(tmp / SIGNATURE, json_bytes(signature, "the signature"))
    atomic_write_bytes(tmp / FEATURIZER, json_bytes(featurizer.to_json(), "the featurizer"))
    (tmp / MODEL_DIR).mkdir()
    model.save(tmp / MODEL_DIR)
    atomic_write_bytes(tmp / METRICS, json_bytes(metrics, "the metrics"))
    atomic_write_bytes(tmp / PROFILE, json_bytes(profile, "the profile"))
    if calibration is not None:
        atomic_write_bytes(tmp / CALIBRATION, json_bytes(calibration.to_json(), "calibration"))

    table = _holdout_table(holdout, featurizer)
    predictions = _calibrated(
        model.predict(featurizer.transform(_inputs(table, featurizer))), calibration
    )
    if predictions.ndim not in (1, 2) or len(predictions) != table.num_rows:
        raise PackageError(
            f"the model returned predictions of shape {predictions.shape} for "
            f"{table.num_rows} holdout rows",
            hint="a model predicts a vector (regression, binary) or an (n, classes) matrix",
        )
    for name, values in _expected_columns(predictions.astype(np.float64)).items():
        table = table.append_column(name, pa.array(values, type=pa.float64()))
    pq.write_table(table, tmp / HOLDOUT)

    stray = find_pickles(tmp)
    if stray:  # e.g. a model family that saved a pickle beside its native files
        names = ", ".join(str(p.relative_to(tmp)) for p in stray)
        raise PackageError(
            f"the model wrote pickled file(s) {names}",
            hint="save models in a native non-pickle format (JSON, LightGBM text)",
        )
    files = {p.relative_to(tmp).as_posix(): sha256_file(p, sync=True) for p in walk_files(tmp)}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "files": files,
        "created_at": utc_now(),
        "meta": dict(meta),
        "model": {"family": model.family, "task": model.task.to_json()},
        "packages": runtime_versions(),
    }
    # Written last: a folder without a manifest is visibly incomplete.
    atomic_write_bytes(tmp / MANIFEST, json_bytes(manifest, "the manifest meta"))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def _calibrated(raw: Any, calibration: Calibrator | None) -> np.ndarray:
    """The model's outputs with the calibrator (if any) applied."""
    raw = np.asarray(raw)
    return raw if calibration is None else calibration.apply(raw)


# --- load -------------------------------------------------------------------------------------


@dataclass
class Package:
    """A loaded, verified model package."""

    folder: Path
    manifest: dict[str, Any]
    signature: dict[str, Any]
    featurizer: FittedFeaturizer
    model: Model
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: Calibrator | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """What the builder recorded: task, classes, threshold, target, spec hash, …"""
        return self.manifest.get("meta", {})

    @property
    def profile_path(self) -> Path:
        """The reference profile monitoring compares traffic with."""
        return self.folder / PROFILE

    def predict_matrix(self, columns: Mapping[str, Any]) -> np.ndarray:
        """Model outputs for input ``columns`` (name → array or list): a vector for
        regression and binary (probability of the positive class), an (n, classes) matrix
        of probabilities for multiclass."""
        return self.predict_features(self.featurizer.transform(columns))

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        """Model outputs for an already featurized matrix ``X``, calibrated when the package
        holds a calibrator."""
        return _calibrated(self.model.predict(X), self.calibration)

    def __repr__(self) -> str:
        return f"Package({str(self.folder)!r}, family={self.model.family!r})"


def load(folder: str | Path, *, verify: bool = True) -> Package:
    """Load the package in ``folder``. With ``verify`` (the default) every file's hash is
    checked, unlisted files are refused, and the holdout is replayed; pickled files are
    refused in any case."""
    return _open(Path(folder), verify=verify, loader=None)


def read_manifest(folder: Path, fmt: str = FORMAT, version: int = VERSION) -> dict[str, Any]:
    """The manifest of the package in ``folder``, checked to be of format ``fmt``."""
    if not folder.is_dir():
        raise PackageError(
            f"{folder} is not a folder", hint="point at a package folder built by mlsd train"
        )
    path = folder / MANIFEST
    if not path.is_file():
        raise PackageError(
            f"{folder} has no {MANIFEST}, so it is not a complete model package",
            hint="point at a package folder built by mlsd train, or rebuild it",
        )
    manifest = read_json(path, folder)
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise PackageError(
            f"{path} is not an mlsd package manifest (no 'format': {fmt!r})",
            hint="point at a package folder built by mlsd train",
        )
    if manifest.get("version") != version:
        raise PackageError(
            f"{path} has package version {manifest.get('version')!r}; this mlsd reads "
            f"version {version}",
            hint="rebuild the package with this version of mlsd",
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise PackageError(f"{path} has no valid 'files' table", hint=MODIFIED)
    return manifest


def verify_files(folder: Path, files: Mapping[str, str]) -> None:
    """Every file of ``folder`` but the manifest is listed in ``files`` with its sha256."""
    present = {}
    for path in walk_files(folder):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise PackageError(f"{name} in {folder} is a symbolic link", hint=MODIFIED)
        if name != MANIFEST:
            present[name] = path
    extra = sorted(set(present) - set(files))
    if extra:
        raise PackageError(
            f"{folder} holds file(s) the manifest does not list: {', '.join(extra)}",
            hint=MODIFIED,
        )
    missing = sorted(set(files) - set(present))
    if missing:
        raise PackageError(
            f"file(s) listed in the manifest are missing from {folder}: {', '.join(missing)}",
            hint=MODIFIED,
        )
    for name in sorted(files):
        if sha256_file(present[name]) != files[name]:
            raise PackageError(
                f"{name} in {folder} does not match its sha256 in {MANIFEST}", hint=MODIFIED
            )


def holdout(package: Package) -> tuple[dict[str, list], np.ndarray]:
    """The holdout's input columns (as Python lists, like a request) and the outputs
    recorded for them at build time."""
    import pyarrow.parquet as pq

    inputs, expected = _split_expected(pq.ParquetFile(package.folder / HOLDOUT).read())
    return _inputs(inputs, package.featurizer), expected


def _replay(package: Package) -> None:
    """Predict the holdout again and compare with the outputs recorded at build time."""
    import pyarrow.parquet as pq

    path = package.folder / HOLDOUT
    try:  # ParquetFile, not read_table: pyarrow.dataset would import pandas
        table = pq.ParquetFile(path).read()
    except FileNotFoundError as exc:
        raise PackageError(f"{HOLDOUT} is missing from {package.folder}", hint=MODIFIED) from exc
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise PackageError(f"{path} cannot be read: {exc}", hint=MODIFIED) from exc
    inputs, expected = _split_expected(table)
    try:
        got = package.predict_matrix(_inputs(inputs, package.featurizer)).astype(np.float64)
    except MlsdError as exc:
        raise PackageError(
            f"replaying {HOLDOUT} of {package.folder} failed: {exc.message}", hint=MODIFIED
        ) from exc
    if got.shape != expected.shape:
        raise PackageError(
            f"replaying {HOLDOUT} of {package.folder} gave outputs of shape {got.shape}; "
            f"{expected.shape} were recorded",
            hint=MODIFIED,
        )
    close = np.isclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=True)
    if close.all():
        return
    diff = np.abs(got - expected)
    diff[~close & ~np.isfinite(diff)] = np.inf  # NaN on one side only
    diff[close] = 0.0
    per_row = diff.reshape(len(diff), -1).max(axis=1)
    row = int(np.argmax(per_row))
    raise PackageError(
        f"replaying {HOLDOUT} of {package.folder} gave different outputs on "
        f"{int((per_row > 0).sum())} of {len(got)} rows; the largest difference is "
        f"{per_row[row]:.6g} at row {row} (got {np.atleast_1d(got[row]).tolist()}, recorded "
        f"{np.atleast_1d(expected[row]).tolist()})",
        hint="the model or featurizer no longer computes what was recorded (edited files, or "
        "a different model runtime version); rebuild or re-register the package",
    )


def _open(folder: Path, *, verify: bool, loader: Callable[[Path], Model] | None) -> Package:
    folder = folder.absolute()
    manifest = read_manifest(folder)
    pickles = find_pickles(folder)
    if pickles:
        names = ", ".join(str(p.relative_to(folder)) for p in pickles)
        raise PackageError(
            f"{folder} holds pickled file(s): {names}; pickles run code when loaded, so mlsd "
            "never loads them",
            hint="remove them and rebuild or re-register the package",
        )
    if verify:
        verify_files(folder, manifest["files"])
    signature = read_json(folder / SIGNATURE, folder)
    metrics = read_json(folder / METRICS, folder)
    try:
        featurizer = featurizer_from_json(read_json(folder / FEATURIZER, folder))
    except MlsdError as exc:
        raise PackageError(f"{FEATURIZER} of {folder}: {exc.message}", hint=MODIFIED) from exc
    try:
        model = (loader or model_loader)(folder / MODEL_DIR)
    except MlsdError as exc:
        raise PackageError(f"{MODEL_DIR}/ of {folder}: {exc.message}", hint=MODIFIED) from exc
    calibration = None
    if (folder / CALIBRATION).exists():
        try:
            calibration = Calibrator.from_json(read_json(folder / CALIBRATION, folder))
        except CalibrationError as exc:
            raise PackageError(f"{CALIBRATION} of {folder}: {exc.message}", hint=MODIFIED) from exc
    package = Package(folder, manifest, signature, featurizer, model, metrics, calibration)
    if verify:
        _replay(package)
    return package
