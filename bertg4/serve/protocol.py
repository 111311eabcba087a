"""The Open Inference Protocol (KServe v2 REST) for BERT tasks: request checks, outputs, errors.

Pure functions, no Ray and no HTTP server: :func:`parse_infer` turns a request body into
the texts a task needs or raises :class:`ProtocolError` with the HTTP status and a message
that names what was wrong; :func:`metadata` and :func:`outputs` build the JSON the
protocol specifies (``{"name", "datatype", "shape", "data"}`` tensors, data flattened in
row-major order).

Inputs are ``BYTES`` tensors of shape ``[n]`` (strings in JSON): ``text`` for one-sentence
tasks, ``text_a`` + ``text_b`` for sentence pairs, ``question`` + ``context`` for QA.
Outputs: classification ``label`` (INT64 ``[n]``) and ``probabilities`` (FP32
``[n, labels]``); regression ``score`` (FP32 ``[n]``); QA ``answer`` (BYTES ``[n]``),
``start_char``/``end_char`` (INT64 ``[n]``) and ``score`` (FP32 ``[n]``); embedding
``embedding`` (FP32 ``[n, hidden]``). Every task also returns ``truncated`` (BOOL ``[n]``):
the text was longer than the model's sequence length and was cut (QA contexts are never
cut: they are read in doc-stride windows).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np


class ProtocolError(Exception):
    """A request the server cannot answer: ``status`` (4xx) and a message naming the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message

    def body(self) -> dict:
        return {"error": self.message}


@dataclass(frozen=True)
class Limits:
    """What one request may carry; past these the server answers 413."""
    max_texts: int = 64              # rows (texts or pairs) per request
    max_chars: int = 4096            # characters per text
    max_body_bytes: int = 1 << 20    # request body size

    def __post_init__(self):
        for k in ("max_texts", "max_chars", "max_body_bytes"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"limit {k} must be a positive integer, got {v!r}")


def input_names(task) -> tuple[str, ...]:
    """The BYTES inputs a task takes."""
    if task.kind == "qa":
        return ("question", "context")
    return ("text_a", "text_b") if task.pair else ("text",)


def output_specs(task, predictor) -> list[dict]:
    """``[{"name", "datatype", "shape"}]`` of a task's outputs (``-1``: the request's rows)."""
    if task.kind == "classification":
        specs = [("label", "INT64", [-1]), ("probabilities", "FP32", [-1, predictor_labels(task, predictor)])]
    elif task.kind == "regression":
        specs = [("score", "FP32", [-1])]
    elif task.kind == "qa":
        specs = [("answer", "BYTES", [-1]), ("start_char", "INT64", [-1]), ("end_char", "INT64", [-1]),
                 ("score", "FP32", [-1])]
    else:
        specs = [("embedding", "FP32", [-1, predictor.config.hidden_size])]
    specs.append(("truncated", "BOOL", [-1]))
    return [{"name": n, "datatype": d, "shape": s} for n, d, s in specs]


def predictor_labels(task, predictor) -> int:
    return int(getattr(predictor, "num_labels", None) or task.num_labels)


def metadata(name: str, predictor, platform: str = "bertg4") -> dict:
    """The model metadata response (``GET /v2/models/{name}``)."""
    task = predictor.task
    return {"name": name, "versions": ["1"], "platform": f"{platform}-{predictor.engine}",
            "inputs": [{"name": n, "datatype": "BYTES", "shape": [-1]} for n in input_names(task)],
            "outputs": output_specs(task, predictor),
            "parameters": {"task": task.name, "model": predictor.config.name, "recipe": predictor.recipe.name,
                           "dtype": predictor.recipe.dtype, "device": predictor.device,
                           "seq_length": predictor.seq_length}}


def check_body_size(content_length, limits: Limits) -> None:
    """413 before reading a body whose declared size is past the limit."""
    if content_length is None:
        return
    try:
        n = int(content_length)
    except ValueError:
        raise ProtocolError(400, f"Content-Length {content_length!r} is not an integer") from None
    if n > limits.max_body_bytes:
        raise ProtocolError(413, f"request body of {n} bytes is larger than the limit of "
                            f"{limits.max_body_bytes} bytes")


def parse_infer(body: bytes, task, limits: Limits) -> tuple[list, dict]:
    """A ``POST /v2/models/{name}/infer`` body -> (rows for ``Predictor.predict``, request info).

    Rows are strings (one-sentence tasks) or ``(first, second)`` pairs. ``info`` holds the
    request ``id`` (echoed back) and the names of the ``outputs`` asked for (None: all).
    """
    if len(body) > limits.max_body_bytes:
        raise ProtocolError(413, f"request body of {len(body)} bytes is larger than the limit of "
                            f"{limits.max_body_bytes} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(400, f"request body is not valid UTF-8 (byte {e.start}: {e.reason})") from None
    try:
        req = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(400, f"request body is not valid JSON: {e.msg} at line {e.lineno} "
                            f"column {e.colno}") from None
    if not isinstance(req, dict):
        raise ProtocolError(400, f"request body must be a JSON object, got {type(req).__name__}")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(400, "request has no 'inputs' list")
    wanted = input_names(task)
    given = {}
    for k, t in enumerate(inputs):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise ProtocolError(400, f"inputs[{k}] must be an object with a 'name'")
        name = t["name"]
        if name not in wanted:
            raise ProtocolError(400, f"unknown input {name!r}; task {task.name} takes "
                                f"{', '.join(wanted)} (BYTES)")
        if name in given:
            raise ProtocolError(400, f"input {name!r} is given twice")
        given[name] = _strings(t, name, limits)
    missing = [n for n in wanted if n not in given]
    if missing:
        raise ProtocolError(400, f"missing input {', '.join(repr(m) for m in missing)}; task "
                            f"{task.name} takes {', '.join(wanted)} (BYTES)")
    columns = [given[n] for n in wanted]
    if len({len(c) for c in columns}) > 1:
        raise ProtocolError(400, "inputs " + ", ".join(f"{n!r} has {len(given[n])} rows" for n in wanted)
                            + "; they must have the same number of rows")
    rows = columns[0] if len(columns) == 1 else list(zip(*columns))
    outs = req.get("outputs")
    names = None
    if outs is not None:
        known = [o["name"] for o in output_specs(task, _Dims())]
        if not isinstance(outs, list) or any(not isinstance(o, dict) or "name" not in o for o in outs):
            raise ProtocolError(400, "'outputs' must be a list of objects with a 'name'")
        names = [o["name"] for o in outs]
        bad = [n for n in names if n not in known]
        if bad:
            raise ProtocolError(400, f"unknown output {bad[0]!r}; task {task.name} has {', '.join(known)}")
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise ProtocolError(400, f"'id' must be a string, got {type(rid).__name__}")
    return rows, {"id": rid, "outputs": names}


class _Dims:  # output names do not depend on sizes
    config = type("C", (), {"hidden_size": 0})()
    num_labels = 0


def _strings(t: dict, name: str, limits: Limits) -> list[str]:
    dtype = t.get("datatype")
    if dtype != "BYTES":
        raise ProtocolError(400, f"input {name!r} has datatype {dtype!r}; expected 'BYTES' (strings)")
    data = t.get("data")
    if not isinstance(data, list):
        raise ProtocolError(400, f"input {name!r} has no 'data' list")
    shape = t.get("shape")
    if (not isinstance(shape, list) or len(shape) != 1 or not isinstance(shape[0], int)
            or isinstance(shape[0], bool)):
        raise ProtocolError(400, f"input {name!r} has shape {shape!r}; expected [n]")
    if shape[0] != len(data):
        raise ProtocolError(400, f"input {name!r} has shape {shape} but {len(data)} data elements")
    if not data:
        raise ProtocolError(400, f"input {name!r} has no texts")
    if len(data) > limits.max_texts:
        raise ProtocolError(413, f"input {name!r} has {len(data)} texts; the limit is "
                            f"{limits.max_texts} per request")
    for i, s in enumerate(data):
        if not isinstance(s, str):
            raise ProtocolError(400, f"input {name!r} element {i} is {type(s).__name__}, not a string")
        if not s.strip():
            raise ProtocolError(400, f"input {name!r} element {i} is an empty text")
        if len(s) > limits.max_chars:
            raise ProtocolError(413, f"input {name!r} element {i} has {len(s)} characters; the limit is "
                                f"{limits.max_chars}")
    return data


def _tensor(name: str, dtype: str, values) -> dict:
    arr = np.asarray(values)
    if dtype == "BYTES":
        data = [str(v) for v in arr.reshape(-1).tolist()]
    elif dtype == "FP32":
        data = [v if math.isfinite(v) else None for v in arr.astype(np.float32).reshape(-1).tolist()]
    elif dtype == "BOOL":
        data = [bool(v) for v in arr.reshape(-1).tolist()]
    else:
        data = [int(v) for v in arr.reshape(-1).tolist()]
    return {"name": name, "datatype": dtype, "shape": list(arr.shape), "data": data}


def outputs(task, result: dict, names=None) -> list[dict]:
    """Output tensors from the arrays of :func:`bertg4.serve.app.answer` (all, or ``names``)."""
    dtypes = {"label": "INT64", "probabilities": "FP32", "score": "FP32", "answer": "BYTES",
              "start_char": "INT64", "end_char": "INT64", "embedding": "FP32", "truncated": "BOOL"}
    keys = names or list(result)
    return [_tensor(k, dtypes[k], result[k]) for k in keys]


def response(model_name: str, task, result: dict, info: dict) -> dict:
    out = {"model_name": model_name, "model_version": "1", "outputs": outputs(task, result, info.get("outputs"))}
    if info.get("id") is not None:
        out["id"] = info["id"]
    return out
