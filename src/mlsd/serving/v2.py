"""The Open Inference Protocol V2 (KServe V2, Triton's HTTP protocol): tensors in and out.

What this module does is the protocol's encoding, with no HTTP in it: an inference request
(JSON, or JSON followed by raw tensor bytes under the binary tensor data extension) becomes
the instances ``/v1/predict`` scores, and an answer becomes output tensors (JSON data, or raw
little-endian bytes after the JSON header when the client asks for binary outputs). It also
writes the server and model metadata and a small model configuration. ``mlsd.serving.app``
owns the routes; numpy and the task's output fields only, since this is the serving path.

Binary tensor data: the header ``Inference-Header-Content-Length`` gives the size of the
JSON part; each input with ``parameters.binary_data_size`` takes its bytes from what
follows, in input order. BYTES elements are a 4-byte little-endian length, then the bytes.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from mlsd.serving.validation import REQUEST_ID_SCHEMA
from mlsd.tasks import LABEL, NUMBER, PER_CLASS, Task

HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ("binary_tensor_data", "model_configuration")

# numeric datatypes of the protocol and the little-endian numpy dtypes of their raw bytes
_DTYPES = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*_DTYPES, "BYTES")
# what a signature input type is sent as, and its datatype in Triton's model configuration
_INPUT_DATATYPE = {"numeric": "FP64", "boolean": "BOOL"}  # others (categories, times): BYTES
_OUTPUT_DATATYPE = {NUMBER: "FP64", LABEL: "BYTES", PER_CLASS: "FP64"}


class V2Error(Exception):
    """A request the protocol refuses: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def input_datatype(kind: str) -> str:
    """The V2 datatype an input of signature type ``kind`` is described with."""
    return _INPUT_DATATYPE.get(kind, "BYTES")


# --- requests ----------------------------------------------------------------------------------


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON header of an inference request and the binary tensor bytes after it."""
    import orjson

    binary = b""
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise V2Error(
                f"Inference-Header-Content-Length {header_length!r} is not a byte count within "
                f"the body's {len(body)} bytes"
            )
        size = int(header_length)
        body, binary = body[:size], body[size:]
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = (
            "; binary tensor data needs the Inference-Header-Content-Length header"
            if header_length is None
            else ""
        )
        raise V2Error(f"the inference request header is not valid JSON: {exc}{hint}") from None
    if not isinstance(payload, dict):
        raise V2Error('expected an inference request object {"inputs": [...]}')
    return payload, binary


def _bytes_elements(raw: bytes, count: int, name: str) -> list[str]:
    """BYTES tensor data: ``count`` elements, each a 4-byte little-endian length then bytes."""
    out, at = [], 0
    for _ in range(count):
        if at + 4 > len(raw):
            raise V2Error(f"input {name!r}: its BYTES data ends before {count} elements")
        (size,) = struct.unpack_from("<I", raw, at)
        at += 4
        if at + size > len(raw):
            raise V2Error(f"input {name!r}: a BYTES element runs past the data")
        out.append(raw[at : at + size].decode("utf-8", "replace"))
        at += size
    if at != len(raw):
        raise V2Error(f"input {name!r}: {len(raw) - at} bytes left after {count} elements")
    return out


def _rows(shape: Any, name: str) -> int:
    """The number of rows of an input of ``shape``: [n] or [n, 1] (one value per row)."""
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise V2Error(f"input {name!r}: shape {shape!r} is not [n] or [n, 1] (one value per row)")
    return shape[0]


def _flatten(data: list) -> list:
    """JSON tensor data in row-major order, nested or flat, as one flat list."""
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            flat.append(v)
        else:
            stack.pop()
    return flat


_TENSOR_KEYS = {"name", "shape", "datatype", "data", "parameters"}


def _decode_input(tensor: Any, binary: bytes, at: int) -> tuple[str, list, int]:
    """One input tensor's name and values (Python values), and where its bytes end."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise V2Error("each input needs a name, a shape, a datatype and data")
    name = tensor["name"]
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise V2Error(f"input {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    n = _rows(tensor.get("shape"), name)
    if tensor.keys() - _TENSOR_KEYS:
        unknown = ", ".join(sorted(tensor.keys() - _TENSOR_KEYS))
        raise V2Error(f"input {name!r}: unknown keys {unknown}")
    parameters = tensor.get("parameters", {})
    if not isinstance(parameters, dict):
        raise V2Error(f"input {name!r}: parameters must be an object")
    if parameters.keys() - {"binary_data_size"}:
        unknown = ", ".join(sorted(parameters.keys() - {"binary_data_size"}))
        raise V2Error(f"input {name!r}: unsupported parameters {unknown}")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise V2Error(f"input {name!r}: binary_data_size {size!r} is not a byte count")
        if "data" in tensor:
            raise V2Error(f"input {name!r}: has both data and binary_data_size")
        raw, at = binary[at : at + size], at + size
        if len(raw) != size:
            raise V2Error(
                f"input {name!r}: binary_data_size {size} runs past the body's binary data"
            )
        if datatype == "BYTES":
            return name, _bytes_elements(raw, n, name), at
        dtype = _DTYPES[datatype]
        if size != n * dtype.itemsize:
            raise V2Error(
                f"input {name!r}: {size} bytes for {n} {datatype} values of "
                f"{dtype.itemsize} byte(s) each"
            )
        return name, np.frombuffer(raw, dtype=dtype).tolist(), at
    if not isinstance(tensor.get("data"), list):
        raise V2Error(f"input {name!r}: needs a data list or parameters.binary_data_size")
    values = _flatten(tensor["data"])
    if len(values) != n:
        raise V2Error(
            f"input {name!r}: shape {tensor['shape']} holds {n} values, data has {len(values)}"
        )
    return name, values, at


def instances(payload: dict, binary: bytes) -> list[dict]:
    """The request's input tensors (one per input column) as instances, one per row."""
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Error('expected {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
    columns: dict[str, list] = {}
    at = 0
    for tensor in inputs:
        name, values, at = _decode_input(tensor, binary, at)
        if name in columns:
            raise V2Error(f"input {name!r} is given twice")
        columns[name] = values
    if at != len(binary):
        raise V2Error(f"{len(binary) - at} bytes of binary data belong to no input")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise V2Error(f"the inputs hold different numbers of rows: {sorted(lengths)}")
    n = lengths.pop()
    names = list(columns)
    return [{name: columns[name][i] for name in names} for i in range(n)]


def requested_outputs(payload: dict, task: Task) -> list[tuple[str, bool]]:
    """Which outputs to answer, in order, and whether each goes as binary data.

    No ``outputs``: all of the task's output fields, binary when the request's
    ``parameters.binary_data_output`` is true (Triton's client sets it by default)."""
    fields = [f.name for f in task.outputs]
    parameters = payload.get("parameters", {})
    if not isinstance(parameters, dict):
        raise V2Error("parameters must be an object")
    default_binary = parameters.get("binary_data_output", False)
    if not isinstance(default_binary, bool):
        raise V2Error("parameters.binary_data_output must be true or false")
    if "outputs" not in payload:
        return [(name, default_binary) for name in fields]
    outputs = payload["outputs"]
    if not isinstance(outputs, list):
        raise V2Error('outputs must be a list of {"name": ...}')
    chosen = []
    for output in outputs:
        if not isinstance(output, dict) or output.get("name") not in fields:
            name = output.get("name") if isinstance(output, dict) else output
            raise V2Error(f"unknown output {name!r}; this model answers {', '.join(fields)}")
        if output.keys() - {"name", "parameters"}:
            unknown = ", ".join(sorted(output.keys() - {"name", "parameters"}))
            raise V2Error(f"output {output['name']!r}: unknown keys {unknown}")
        params = output.get("parameters", {})
        if not isinstance(params, dict):
            raise V2Error(f"output {output['name']!r}: parameters must be an object")
        if params.get("classification"):
            raise V2Error("the classification extension is not supported; read the outputs")
        if params.keys() - {"binary_data"}:
            unknown = ", ".join(sorted(params.keys() - {"binary_data"}))
            raise V2Error(f"output {output['name']!r}: unsupported parameters {unknown}")
        as_binary = params.get("binary_data", default_binary)
        if not isinstance(as_binary, bool):
            raise V2Error(f"output {output['name']!r}: binary_data must be true or false")
        chosen.append((output["name"], as_binary))
    return chosen


# --- answers -----------------------------------------------------------------------------------


def output_tensors(predictions: list[dict], task: Task, classes: list) -> list[dict]:
    """The answer's output tensors, one per output field of the task (``Task.outputs``)."""
    n = len(predictions)
    tensors = []
    for field in task.outputs:
        column = [p[field.name] for p in predictions]
        shape = [n]
        if field.kind == LABEL:
            column = [str(v) for v in column]
        elif field.kind == PER_CLASS:
            shape = [n, len(classes)]
            column = [v for row in column for v in row.values()]
        datatype = _OUTPUT_DATATYPE[field.kind]
        tensors.append({"name": field.name, "shape": shape, "datatype": datatype, "data": column})
    return tensors


def _raw(tensor: dict) -> bytes:
    """A tensor's data as raw little-endian bytes (BYTES: length-prefixed UTF-8)."""
    if tensor["datatype"] == "BYTES":
        parts = []
        for value in tensor["data"]:
            encoded = str(value).encode()
            parts.append(struct.pack("<I", len(encoded)))
            parts.append(encoded)
        return b"".join(parts)
    values = [math.nan if v is None else v for v in tensor["data"]]
    return np.asarray(values, dtype=_DTYPES[tensor["datatype"]]).tobytes()


def encode_answer(
    answer: dict, tensors: list[dict], wanted: list[tuple[str, bool]]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers: JSON, or the JSON header followed by the
    binary outputs (with ``Inference-Header-Content-Length``) when any is asked as binary."""
    import orjson

    by_name = {t["name"]: t for t in tensors}
    outputs, binary = [], []
    for name, as_binary in wanted:
        tensor = by_name[name]
        if as_binary:
            raw = _raw(tensor)
            binary.append(raw)
            tensor = {k: v for k, v in tensor.items() if k != "data"}
            tensor["parameters"] = {"binary_data_size": len(raw)}
        outputs.append(tensor)
    header = orjson.dumps({**answer, "outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not binary:
        return header, {"content-type": "application/json"}
    return b"".join([header, *binary]), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }


# --- metadata ----------------------------------------------------------------------------------


def server_metadata(version: str) -> dict[str, Any]:
    """``GET /v2``: the server's name, version and the protocol extensions it supports."""
    return {"name": "mlsd", "version": version, "extensions": list(EXTENSIONS)}


def _output_shapes(task: Task, classes: list) -> list[tuple[str, str, list[int]]]:
    return [
        (
            f.name,
            _OUTPUT_DATATYPE[f.kind],
            [len(classes)] if f.kind == PER_CLASS else [1],
        )
        for f in task.outputs
    ]


def model_metadata(name: str, version: str, signature: dict, task: Task) -> dict[str, Any]:
    """``GET /v2/models/{name}``: inputs and outputs with datatype and shape (-1: any rows)."""
    classes = signature["output"].get("classes") or []
    return {
        "name": name,
        "versions": [version],
        "platform": "mlsd",
        "inputs": [
            {"name": i["name"], "datatype": input_datatype(i["type"]), "shape": [-1]}
            for i in signature["inputs"]
        ],
        "outputs": [
            {"name": o, "datatype": d, "shape": [-1] if dims == [1] else [-1, *dims]}
            for o, d, dims in _output_shapes(task, classes)
        ],
    }


def model_config(
    name: str, version: str, signature: dict, task: Task, max_batch_size: int
) -> dict[str, Any]:
    """``GET /v2/models/{name}/config``: a small model configuration in the JSON form of
    Triton's (``data_type`` ``TYPE_*``, ``dims`` per row, the batch being the first axis)."""
    classes = signature["output"].get("classes") or []
    return {
        "name": name,
        "version": version,
        "platform": "mlsd",
        "backend": "mlsd",
        "max_batch_size": max_batch_size,
        "input": [
            {
                "name": i["name"],
                "data_type": "TYPE_"
                + ("STRING" if (d := input_datatype(i["type"])) == "BYTES" else d),
                "dims": [1],
                "optional": bool(i.get("nullable", False)),
            }
            for i in signature["inputs"]
        ],
        "output": [
            {"name": o, "data_type": "TYPE_" + ("STRING" if d == "BYTES" else d), "dims": dims}
            for o, d, dims in _output_shapes(task, classes)
        ],
    }


# --- OpenAPI -----------------------------------------------------------------------------------


def infer_request_schema(inputs: list[dict], value_schemas: dict[str, dict], task: Task) -> dict:
    """The JSON form of an inference request for this model, one tensor per input in the
    signature's order, one row each (the server takes any number of rows of equal length,
    which a JSON Schema cannot say; the binary tensor data extension is described in the
    operation's text)."""
    tensors = []
    for i in inputs:
        value = value_schemas[i["name"]]
        tensors.append(
            {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "additionalProperties": False,
                "properties": {
                    "name": {"const": i["name"]},
                    "parameters": {
                        "type": "object",
                        "additionalProperties": False,
                        "description": "binary_data_size (binary tensor data extension only)",
                    },
                    "shape": {
                        "type": "array",
                        "items": {"const": 1},
                        "minItems": 1,
                        "maxItems": 2,
                        "description": "[n] or [n, 1]: one value per row",
                    },
                    "datatype": {"enum": list(DATATYPES)},
                    "data": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 1,
                        "items": {
                            "anyOf": [
                                value,
                                {"type": "array", "items": value, "minItems": 1, "maxItems": 1},
                            ]
                        },
                    },
                },
            }
        )
    fields = [f.name for f in task.outputs]
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": REQUEST_ID_SCHEMA,
            "inputs": {
                "type": "array",
                "prefixItems": tensors,
                "items": False,
                "minItems": len(tensors),
                "maxItems": len(tensors),
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"enum": fields},
                        "parameters": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"binary_data": {"type": "boolean"}},
                        },
                    },
                },
            },
            "parameters": {
                "type": "object",
                "properties": {"binary_data_output": {"type": "boolean"}},
            },
        },
    }


TENSOR_SCHEMA = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string"},
        "data": {"type": "array"},
        "parameters": {"type": "object"},
    },
}
INFER_RESPONSE_SCHEMA = {
    "type": "object",
    "required": ["model_name", "model_version", "id", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": TENSOR_SCHEMA},
    },
}
METADATA_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
SERVER_METADATA_SCHEMA = {
    "type": "object",
    "required": ["name", "version", "extensions"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}},
    },
}
MODEL_METADATA_SCHEMA = {
    "type": "object",
    "required": ["name", "versions", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": METADATA_TENSOR},
        "outputs": {"type": "array", "items": METADATA_TENSOR},
    },
}
CONFIG_TENSOR = {
    "type": "object",
    "required": ["name", "data_type", "dims"],
    "properties": {
        "name": {"type": "string"},
        "data_type": {"type": "string"},
        "dims": {"type": "array", "items": {"type": "integer"}},
        "optional": {"type": "boolean"},
    },
}
MODEL_CONFIG_SCHEMA = {
    "type": "object",
    "required": ["name", "platform", "max_batch_size", "input", "output"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "platform": {"type": "string"},
        "backend": {"type": "string"},
        "max_batch_size": {"type": "integer"},
        "input": {"type": "array", "items": CONFIG_TENSOR},
        "output": {"type": "array", "items": CONFIG_TENSOR},
    },
}
