"""LightGBM inference through LightGBM's C library, without the ``lightgbm`` Python package.

``import lightgbm`` imports pandas, scikit-learn and scipy when they are installed, which the
serving path must not pay for. The C library (``lib_lightgbm``) that the lightgbm wheel ships
does all the work anyway, so this module finds it inside the installed package without
importing the package, loads it with ctypes, and calls the handful of C functions prediction
needs. Predictions are bit-identical to ``lightgbm.Booster(model_str=...).predict(X)``: both
end in the same C call on the same float64 matrix.

C functions used: ``LGBM_BoosterLoadModelFromString``, ``LGBM_BoosterFree``,
``LGBM_BoosterGetNumClasses``, ``LGBM_BoosterGetNumFeature``,
``LGBM_BoosterGetCurrentIteration``, ``LGBM_BoosterPredictForMat`` (many rows),
``LGBM_BoosterPredictForMatSingleRowFastInit`` / ``LGBM_BoosterPredictForMatSingleRowFast`` /
``LGBM_FastConfigFree`` (one row), ``LGBM_BoosterDumpModel`` and ``LGBM_GetLastError``.

Threads: one :class:`Booster` may predict from several threads at once. ctypes releases the
GIL during each call; LightGBM's ``Booster::Predict`` holds its booster's shared lock and
initialising a single-row predictor takes the exclusive one. Building a
``Predictor`` writes the iteration range into the booster (LightGBM issue #6142), a race
that is harmless here because every call asks for the same range (all trees). A single-row
predictor has a scratch buffer guarded by its own mutex, so rather than share one this module
keeps a small pool: a thread takes a free one, or makes one, and gives it back afterwards.
LightGBM keeps its OpenMP thread count in a process-wide variable that every predict call sets
from its ``num_threads`` parameter (absent: OpenMP's default), so ``predict`` passes one
unless told 0, and defaults to 1: a server answering many small requests gains nothing from
OpenMP teams that spin on cores other requests need.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.models.base import ModelError

# constants of LightGBM's c_api.h
C_API_DTYPE_FLOAT64 = 1
C_API_PREDICT_NORMAL = 0  # with the objective's transform: probabilities for classification
C_API_FEATURE_IMPORTANCE_SPLIT = 0
MAX_ROWS = 2**31 - 1  # LGBM_BoosterPredictForMat counts rows in an int32

_c_int_p = ctypes.POINTER(ctypes.c_int)
_c_int64_p = ctypes.POINTER(ctypes.c_int64)
_c_double_p = ctypes.POINTER(ctypes.c_double)
_c_void_p_p = ctypes.POINTER(ctypes.c_void_p)

# name: (restype, argtypes), from c_api.h; declared so ctypes converts and checks every call
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "LGBM_GetLastError": (ctypes.c_char_p, []),
    "LGBM_BoosterLoadModelFromString": (ctypes.c_int, [ctypes.c_char_p, _c_int_p, _c_void_p_p]),
    "LGBM_BoosterFree": (ctypes.c_int, [ctypes.c_void_p]),
    "LGBM_BoosterGetNumClasses": (ctypes.c_int, [ctypes.c_void_p, _c_int_p]),
    "LGBM_BoosterGetNumFeature": (ctypes.c_int, [ctypes.c_void_p, _c_int_p]),
    "LGBM_BoosterGetCurrentIteration": (ctypes.c_int, [ctypes.c_void_p, _c_int_p]),
    "LGBM_BoosterPredictForMat": (
        ctypes.c_int,
        [
            ctypes.c_void_p,  # handle
            ctypes.c_void_p,  # data
            ctypes.c_int,  # data_type
            ctypes.c_int32,  # nrow
            ctypes.c_int32,  # ncol
            ctypes.c_int,  # is_row_major
            ctypes.c_int,  # predict_type
            ctypes.c_int,  # start_iteration
            ctypes.c_int,  # num_iteration
            ctypes.c_char_p,  # parameter
            _c_int64_p,  # out_len
            ctypes.c_void_p,  # out_result (double*)
        ],
    ),
    "LGBM_BoosterPredictForMatSingleRowFastInit": (
        ctypes.c_int,
        [
            ctypes.c_void_p,  # handle
            ctypes.c_int,  # predict_type
            ctypes.c_int,  # start_iteration
            ctypes.c_int,  # num_iteration
            ctypes.c_int,  # data_type
            ctypes.c_int32,  # ncol
            ctypes.c_char_p,  # parameter
            _c_void_p_p,  # out_fastConfig
        ],
    ),
    "LGBM_BoosterPredictForMatSingleRowFast": (
        ctypes.c_int,
        [ctypes.c_void_p, ctypes.c_void_p, _c_int64_p, ctypes.c_void_p],
    ),
    "LGBM_FastConfigFree": (ctypes.c_int, [ctypes.c_void_p]),
    "LGBM_BoosterDumpModel": (
        ctypes.c_int,
        [
            ctypes.c_void_p,  # handle
            ctypes.c_int,  # start_iteration
            ctypes.c_int,  # num_iteration
            ctypes.c_int,  # feature_importance_type
            ctypes.c_int64,  # buffer_len
            _c_int64_p,  # out_len
            ctypes.c_char_p,  # out_str (a buffer we own)
        ],
    ),
}

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()
# LGBM_BoosterPredictForMatSingleRowFast called through PyDLL, which keeps the GIL: one row
# takes a few microseconds, while releasing and re-taking the GIL around it lets another
# thread (the prediction log's writer) hold it for up to the 5 ms switch interval.
_predict_row_holding_gil: Any = None


def library_name() -> str:
    """The file name of LightGBM's C library on this platform."""
    if sys.platform == "win32":
        return "lib_lightgbm.dll"
    if sys.platform == "darwin":
        return "lib_lightgbm.dylib"
    return "lib_lightgbm.so"


def library_candidates() -> list[Path]:
    """Where the library may be, in the order lightgbm's own ``libpath.py`` looks: beside the
    package folder, then its ``bin/`` and ``lib/`` (the wheels ship ``lightgbm/lib/``).
    Found with ``importlib.util.find_spec``, which does not import the package."""
    try:
        spec = importlib.util.find_spec("lightgbm")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return []
    name = library_name()
    candidates: list[Path] = []
    for location in spec.submodule_search_locations:
        package = Path(location).resolve()
        folders = [package.parent, package / "bin", package / "lib"]
        if sys.platform == "win32":
            folders += [package.parent / "Release", package.parent / "windows" / "x64" / "DLL"]
        candidates += [folder / name for folder in folders]
    return candidates


def find_library() -> Path:
    """The path of ``lib_lightgbm`` inside the installed lightgbm package."""
    candidates = library_candidates()
    for path in candidates:
        if path.is_file():
            return path
    looked = "\n  ".join(str(p) for p in candidates) or "(the lightgbm package is not installed)"
    raise ModelError(
        f"LightGBM's C library {library_name()} was not found; looked in:\n  {looked}",
        hint="install lightgbm (pip install 'lightgbm>=4') in the environment that serves",
    )


def load_library() -> ctypes.CDLL:
    """LightGBM's C library, loaded once per process with every function used declared."""
    global _lib
    if _lib is not None:
        return _lib
    with _lib_lock:
        if _lib is None:
            path = find_library()
            try:
                lib = ctypes.cdll.LoadLibrary(str(path))
            except OSError as exc:
                raise ModelError(
                    f"LightGBM's C library {path} could not be loaded: {exc}",
                    hint="reinstall lightgbm; on macOS it also needs libomp (brew install libomp)",
                ) from exc
            for name, (restype, argtypes) in _SIGNATURES.items():
                try:
                    function = getattr(lib, name)
                except AttributeError as exc:
                    raise ModelError(
                        f"LightGBM's C library {path} has no {name}",
                        hint="install lightgbm 4 or newer",
                    ) from exc
                function.restype = restype
                function.argtypes = argtypes
            global _predict_row_holding_gil
            name = "LGBM_BoosterPredictForMatSingleRowFast"
            row = getattr(ctypes.PyDLL(str(path), handle=lib._handle), name)
            row.restype, row.argtypes = _SIGNATURES[name]
            _predict_row_holding_gil = row
            _lib = lib
    return _lib


def _check(lib: ctypes.CDLL, ret: int, doing: str, hint: str = "re-train the model") -> None:
    """Every C call returns 0 or -1; on -1 the reason is LGBM_GetLastError's (per thread)."""
    if ret != 0:
        message = (lib.LGBM_GetLastError() or b"unknown error").decode("utf-8", "replace")
        raise ModelError(f"LightGBM could not {doing}: {message}", hint=hint)


class Booster:
    """A LightGBM model loaded from its text form, for prediction only.

    ``predict`` gives what ``lightgbm.Booster.predict`` gives with its defaults: transformed
    outputs (probabilities for binary and multiclass, values for regression) from every tree
    in the model, shaped ``(n,)``, or ``(n, k)`` for a k-class model.
    """

    def __init__(self, handle: ctypes.c_void_p, model_str: str, num_iterations: int):
        # use from_string; this takes ownership of ``handle``
        self._lib = load_library()
        self._handle = handle
        self._model_str = model_str
        self._fast_pool: list[_RowPredictor] = []  # single-row predictors not in use
        self._fast_all: list[_RowPredictor] = []  # every one made, freed with the booster
        self._fast_lock = threading.Lock()
        self.num_iterations = num_iterations
        self.num_classes = self._get_int("LGBM_BoosterGetNumClasses", "count the classes")
        self.num_features = self._get_int("LGBM_BoosterGetNumFeature", "count the features")

    @classmethod
    def from_string(cls, model_str: str) -> Booster:
        """Load LightGBM's text model (what ``model_to_string`` gives and ``model.txt`` holds)."""
        lib = load_library()
        handle = ctypes.c_void_p()
        num_iterations = ctypes.c_int(0)
        ret = lib.LGBM_BoosterLoadModelFromString(
            model_str.encode("utf-8"), ctypes.byref(num_iterations), ctypes.byref(handle)
        )
        if ret != 0:
            if handle.value:
                lib.LGBM_BoosterFree(handle)
            _check(lib, ret, "load the model")
        return cls(handle, model_str, int(num_iterations.value))

    # --- what the model is --------------------------------------------------------------

    def _get_int(self, function: str, doing: str) -> int:
        out = ctypes.c_int(0)
        _check(self._lib, getattr(self._lib, function)(self._handle, ctypes.byref(out)), doing)
        return int(out.value)

    def current_iteration(self) -> int:
        """Boosting rounds in the model (for multiclass, one round holds k trees)."""
        return self._get_int("LGBM_BoosterGetCurrentIteration", "count the iterations")

    def model_to_string(self) -> str:
        """The text the booster was loaded from."""
        return self._model_str

    def dump_model(self) -> dict[str, Any]:
        """The model as LightGBM's JSON dump (trees, splits, leaves), parsed."""
        out_len = ctypes.c_int64(0)
        size = 1 << 20
        for _ in range(2):
            buffer = ctypes.create_string_buffer(size)
            ret = self._lib.LGBM_BoosterDumpModel(
                self._handle, 0, -1, C_API_FEATURE_IMPORTANCE_SPLIT, size, ctypes.byref(out_len),
                buffer,
            )  # fmt: skip
            _check(self._lib, ret, "dump the model")
            if out_len.value <= size:
                return json.loads(buffer.value.decode("utf-8"))
            size = int(out_len.value)
        raise ModelError("LightGBM's model dump kept growing", hint="re-train the model")

    # --- prediction --------------------------------------------------------------------

    def predict(self, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Predictions for the rows of ``X`` (2-D, converted to C-contiguous float64 when it
        is not). ``num_threads`` is LightGBM's OpenMP thread count for many rows (0: OpenMP's
        default); a single row is always predicted on the calling thread."""
        if self._handle is None:
            raise ModelError("the LightGBM booster was freed", hint="load the model again")
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.num_features:
            raise ModelError(
                f"the LightGBM model expects {self.num_features} features, got shape {X.shape}",
                hint="pass a 2-D float matrix with one column per model feature",
            )
        n, k = X.shape[0], self.num_classes
        if n == 1:
            out = self._predict_row(X)
        elif n == 0:
            out = np.empty(0, dtype=np.float64)
        elif n > MAX_ROWS:
            raise ModelError(
                f"LightGBM predicts at most {MAX_ROWS} rows at once, got {n}",
                hint="predict in chunks",
            )
        else:
            out = np.empty(n * k, dtype=np.float64)
            out_len = ctypes.c_int64(0)
            ret = self._lib.LGBM_BoosterPredictForMat(
                self._handle, X.ctypes.data, C_API_DTYPE_FLOAT64, n, X.shape[1], 1,
                C_API_PREDICT_NORMAL, 0, -1, _parameters(num_threads), ctypes.byref(out_len),
                out.ctypes.data,
            )  # fmt: skip
            _check(self._lib, ret, "predict", _PREDICT_HINT)
            _check_length(out_len.value, n * k)
        return out.reshape(n, k) if k > 1 else out

    def _predict_row(self, X: np.ndarray) -> np.ndarray:
        try:
            row = self._fast_pool.pop()  # atomic under the GIL: no two threads get one
        except IndexError:
            row = self._new_row_predictor()
        try:
            # copying into the predictor's own buffers is cheaper than asking numpy for
            # the addresses of two new arrays
            np.copyto(row.inputs, X[0])
            ret = _predict_row_holding_gil(
                row.handle, row.inputs_address, row.out_len_ref, row.outputs_address
            )
            _check(self._lib, ret, "predict", _PREDICT_HINT)
            _check_length(row.out_len.value, len(row.outputs))
            return row.outputs.copy()
        finally:
            self._fast_pool.append(row)

    def _new_row_predictor(self) -> _RowPredictor:
        """A single-row predictor: LightGBM's predictor, its scratch buffer and its config
        (a "FastConfig"), made once and reused, with input and output buffers."""
        handle = ctypes.c_void_p()
        ret = self._lib.LGBM_BoosterPredictForMatSingleRowFastInit(
            self._handle, C_API_PREDICT_NORMAL, 0, -1, C_API_DTYPE_FLOAT64, self.num_features,
            b"num_threads=1", ctypes.byref(handle),
        )  # fmt: skip
        _check(self._lib, ret, "prepare single-row prediction")
        row = _RowPredictor(handle, self.num_features, self.num_classes)
        with self._fast_lock:
            self._fast_all.append(row)
        return row

    # --- lifetime ----------------------------------------------------------------------

    def free(self) -> None:
        """Release the C booster and its single-row predictors. Garbage collection does it;
        call it yourself only when no thread is predicting with this booster."""
        lib, handle = getattr(self, "_lib", None), getattr(self, "_handle", None)
        if lib is None or handle is None:
            return
        self._handle = None
        with self._fast_lock:
            fast_all, self._fast_all, self._fast_pool = self._fast_all, [], []
        for row in fast_all:
            lib.LGBM_FastConfigFree(row.handle)
        lib.LGBM_BoosterFree(handle)

    def __del__(self) -> None:
        self.free()

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # copy, deepcopy and pickle rebuild from the text instead of sharing the C handle
        return (Booster.from_string, (self._model_str,))

    def __repr__(self) -> str:
        return (
            f"Booster(num_features={self.num_features}, num_classes={self.num_classes}, "
            f"num_iterations={self.num_iterations})"
        )


class _RowPredictor:
    """One LightGBM FastConfig handle with the buffers a single-row call reads and writes."""

    __slots__ = (
        "handle",
        "inputs",
        "inputs_address",
        "out_len",
        "out_len_ref",
        "outputs",
        "outputs_address",
    )

    def __init__(self, handle: ctypes.c_void_p, n_features: int, n_outputs: int):
        self.handle = handle
        self.inputs = np.zeros(n_features, dtype=np.float64)
        self.inputs_address = self.inputs.ctypes.data
        self.outputs = np.zeros(n_outputs, dtype=np.float64)
        self.outputs_address = self.outputs.ctypes.data
        self.out_len = ctypes.c_int64(0)
        self.out_len_ref = ctypes.byref(self.out_len)


_PREDICT_HINT = "check the model file and the input matrix"


def _parameters(num_threads: int) -> bytes:
    return f"num_threads={int(num_threads)}".encode() if num_threads > 0 else b""


def _check_length(got: int, expected: int) -> None:
    if got != expected:
        raise ModelError(
            f"LightGBM returned {got} predictions where {expected} were expected",
            hint="re-train the model",
        )
