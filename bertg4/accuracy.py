"""Does every optimization keep the answers? Accuracy and agreement per engine and rung.

For a fine-tuned classifier (``bertg4 finetune --task SST``), every engine/recipe pair that
runs on the device predicts the whole evaluation set; each row gives its accuracy, the share
of predictions equal to the fp32 baseline's, and how far its logits are from the baseline's.
For a fine-tuned QA model (``bertg4 finetune --task QA``) each row gives SQuAD v1.1 exact match
and F1, the share of questions whose predicted answer string equals the fp32 baseline's, the
difference of its F1 from the baseline's (ΔF1), and the largest start/end logit difference
over the windows' tokens. The project's targets: agreement >= 99.5 % (SST-2), |ΔF1| <= 0.5 (QA);
each row says whether it meets its target.

Pairs the device cannot run are rows with status "not applicable" and the reason; engines
that cannot be loaded here (e.g. MXNet not installed) are rows with status "not available"
and the reason.
"""
from __future__ import annotations

import time

import numpy as np

from . import data as D
from .api import load
from .checkpoint import load_checkpoint
from .recipe import NotApplicable, get_recipe, ladder
from .tasks import accuracy, get_task, nbest_spans, squad_scores

#: what each engine is asked to run (the hf reference runs as shipped: dtype and attention only;
#: mx: the rungs of the original MXNet recipe)
DEFAULT_RECIPES = {
    "pt": [r.name for r in ladder()] + ["interleaved-fp32", "graph-pass-fp32", "sdpa-fp32", "sdpa-fp16", "bf16",
                                        "int8", "onednn-int8"],
    "hf": ["baseline", "sdpa-fp32", "sdpa-fp16"],
    "mx": ["baseline", "fp16", "+safe_accumulation", "+interleaved", "+true_fp16", "+graph_pass",
           "interleaved-fp32", "graph-pass-fp32", "int8"],
    "ort": ["baseline", "int8"],  # ONNX Runtime's optimized graph and its dynamic INT8
}
#: the targets the project states for agreement with fp32
TARGET_AGREEMENT = 0.995   # share of SST-2 predictions equal to the fp32 baseline's
TARGET_DELTA_F1 = 0.5      # |F1 - baseline F1|, in F1 points, for SQuAD
N_BEST, MAX_ANSWER_LENGTH = 20, 30

#: what loading an engine raises when the engine is not installed or not built on this machine
UNAVAILABLE = (ImportError, NotImplementedError, OSError)


def _unavailable(engine: str) -> tuple[type[BaseException], ...]:
    if engine == "ort":
        from .ort import ORTUnavailable
        return UNAVAILABLE + (ORTUnavailable,)
    if engine != "mx":
        return UNAVAILABLE
    try:  # MXNet missing or unusable (e.g. numpy 2): bertg4.mx says so with MXNetUnavailable
        from .mx.compat import MXNetUnavailable
    except ImportError:
        return UNAVAILABLE
    return UNAVAILABLE + (MXNetUnavailable,)


def _pairs(engines, recipes):
    # the reference (the pt fp32 baseline) comes first, whatever else is asked for
    for e in engines:
        if e not in DEFAULT_RECIPES:
            raise ValueError(f"unknown engine {e!r}: choose from {', '.join(DEFAULT_RECIPES)}")
    return [("pt", "baseline")] + list(dict.fromkeys(
        (e, get_recipe(n).name) for e in engines for n in (recipes or DEFAULT_RECIPES[e])
        if (e, get_recipe(n).name) != ("pt", "baseline")))


def _load(row, engine, recipe, t, device, seq_length, ckpt, log):
    """A predictor, or None after recording why there is none."""
    try:
        return load(task=t, engine=engine, recipe=recipe, device=device, seq_length=seq_length,
                    checkpoint=ckpt)
    except NotApplicable as e:
        row.update(status="not applicable", reason=str(e))
    except _unavailable(engine) as e:
        if engine == "pt" and recipe.name == "baseline":
            raise
        row.update(status="not available", reason=f"engine {engine}: {type(e).__name__}: {e}")
    log(f"{engine:>3} {recipe.name:<20} {row['status']}")
    return None


def rung_accuracy(model: str, task="SST", device: str = "cpu", engines=("pt", "hf"), recipes=None,
                  data=None, seq_length: int | None = None, batch_size: int = 64, log=print) -> list[dict]:
    """One row per (engine, recipe), the pt fp32 baseline first.

    Classification: accuracy on ``data`` (a :class:`bertg4.data.TextSet`; default SST-2
    dev), agreement with the baseline's predictions, max-abs logit difference, wall time.
    QA: exact match and F1 on ``data`` (a :class:`bertg4.data.QASet` or a SQuAD JSON path;
    default SQuAD v1.1 dev when found), agreement of the answer strings with the
    baseline's, ΔF1 against the baseline, max-abs logit difference over the windows'
    tokens. ``seq_length`` defaults to 128 (classification) or 384 (QA).
    """
    t = get_task(task)
    if t.kind not in ("classification", "qa"):
        raise ValueError(f"rung_accuracy scores classification and QA tasks; {t.name} is {t.kind}")
    qa = t.kind == "qa"
    seq_length = seq_length or (384 if qa else 128)
    if qa:
        data = D.read_squad(str(data)) if isinstance(data, str) else data
        data = data if data is not None else D.load_squad("dev")
        for i, golds in enumerate(data.answers):
            if not golds:
                raise ValueError(f"{data.source}: question {data.ids[i]!r} has no answers to score against")
    else:
        data = data if data is not None else D.load_sst2("dev")
        if data.labels is None:
            raise ValueError(f"{data.source}: no labels to score against")
    ckpt = load_checkpoint(model)
    if t.head not in ckpt.heads:
        raise ValueError(f"{ckpt.source} has no {t.head} head: fine-tune it first "
                         f"(bertg4 finetune --task {t.name}), accuracy of a random head means nothing")
    if qa:
        texts = list(zip(data.questions, data.contexts))
    else:
        labels = np.asarray(data.labels)
        texts = data.first if data.second is None else list(zip(data.first, data.second))
    rows, ref = [], None
    for engine, name in _pairs(engines, recipes):
        recipe = get_recipe(name)
        row = {"kind": "accuracy", "task": t.name, "engine": engine, "recipe": recipe.name,
               "dtype": recipe.dtype, "device": device, "data": data.source, "examples": len(data),
               "model": ckpt.source, "seq_length": seq_length}
        rows.append(row)
        p = _load(row, engine, recipe, t, device, seq_length, ckpt, log)
        if p is None:
            continue
        started = time.perf_counter()
        feats = p.featurize(texts)
        batch = feats.batch if qa else feats
        logits = p.infer(batch, batch_size).astype(np.float64)
        if qa:
            nbest = nbest_spans(logits, feats, n_best=N_BEST, max_answer_length=MAX_ANSWER_LENGTH)
            answers = [c[0]["text"] if c else "" for c in nbest]
        seconds = time.perf_counter() - started
        if qa:
            # compare logits over each window's tokens only (padding positions mean nothing)
            valid = np.arange(batch.seq_len)[None, :] < batch.valid_length[:, None]
            values = logits[valid]
        else:
            values = logits
        if ref is None:
            ref = {"values": values, "preds": answers if qa else logits.argmax(-1)}
            if qa:
                ref["f1"] = squad_scores(answers, data)["f1"]
        row.update(status="ok", device_name=p.device_name(), finite=bool(np.isfinite(values).all()),
                   max_abs_logit_diff=(float(np.abs(values - ref["values"]).max())
                                       if values.shape == ref["values"].shape else None),
                   seconds=seconds)
        if qa:
            scores = squad_scores(answers, data)
            same = np.array([a == b for a, b in zip(answers, ref["preds"])])
            row.update(exact_match=scores["exact_match"], f1=scores["f1"], windows=len(batch),
                       truncated_questions=int(feats.query_truncated.sum()),
                       agreement_vs_fp32=float(same.mean()), disagreements=int((~same).sum()),
                       delta_f1_vs_fp32=scores["f1"] - ref["f1"],
                       meets_target=bool(abs(scores["f1"] - ref["f1"]) <= TARGET_DELTA_F1),
                       target=f"|ΔF1| <= {TARGET_DELTA_F1}",
                       differing_answers={q: {"answer": a, "fp32": b} for q, a, b
                                          in zip(data.ids, answers, ref["preds"]) if a != b})
            log(f"{engine:>3} {recipe.name:<20} EM {row['exact_match']:.2f}, F1 {row['f1']:.2f}, "
                f"ΔF1 {row['delta_f1_vs_fp32']:+.2f}, same answer {100 * row['agreement_vs_fp32']:.2f} % "
                f"({row['disagreements']} differ), max |Δlogit| {_fmt(row['max_abs_logit_diff'])}")
        else:
            preds = logits.argmax(-1)
            agreement = float((preds == ref["preds"]).mean())
            row.update(accuracy=accuracy(preds, labels), agreement_vs_fp32=agreement,
                       disagreements=int((preds != ref["preds"]).sum()),
                       meets_target=bool(agreement >= TARGET_AGREEMENT),
                       target=f"agreement >= {100 * TARGET_AGREEMENT:g} %")
            log(f"{engine:>3} {recipe.name:<20} accuracy {100 * row['accuracy']:.2f} %, agreement "
                f"{100 * row['agreement_vs_fp32']:.2f} % ({row['disagreements']} differ), "
                f"max |Δlogit| {_fmt(row['max_abs_logit_diff'])}")
        del p
    return rows


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.1e}"


def _status(r) -> str:
    return "n/a" if r["status"] == "not applicable" else r["status"]


#: the task-specific columns of the table: (header, format of an "ok" row)
_COLUMNS = {
    "QA": [("EM", lambda r: f"{r['exact_match']:.2f}"), ("F1", lambda r: f"{r['f1']:.2f}"),
           ("ΔF1 vs fp32", lambda r: f"{r['delta_f1_vs_fp32']:+.2f}"),
           ("same answer as fp32", lambda r: f"{100 * r['agreement_vs_fp32']:.2f} %"),
           ("differ", lambda r: str(r["disagreements"])),
           ("max abs logit diff", lambda r: _fmt(r["max_abs_logit_diff"])),
           ("meets \\|ΔF1\\| ≤ 0.5", lambda r: "yes" if r["meets_target"] else "no")],
    "classification": [("accuracy", lambda r: f"{100 * r['accuracy']:.2f} %"),
                       ("agreement with fp32", lambda r: f"{100 * r['agreement_vs_fp32']:.2f} %"),
                       ("differ", lambda r: str(r["disagreements"])),
                       ("max abs logit diff", lambda r: _fmt(r["max_abs_logit_diff"])),
                       ("meets agreement ≥ 99.5 %", lambda r: "yes" if r["meets_target"] else "no")],
}


def format_accuracy(rows: list[dict]) -> str:
    """A Markdown table of :func:`rung_accuracy` rows (SST or QA columns, from the rows' task)."""
    columns = _COLUMNS["QA" if rows and rows[0].get("task") == "QA" else "classification"]
    lines = ["| engine | recipe | dtype | " + " | ".join(h for h, _ in columns) + " |",
             "|---|---|---|" + "---:|" * (len(columns) - 1) + "---|"]
    for r in rows:
        cells = [f(r) for _, f in columns] if r["status"] == "ok" else \
            [_status(r)] + [""] * (len(columns) - 1)
        lines.append(f"| {r['engine']} | {r['recipe']} | {r['dtype']} | " + " | ".join(cells) + " |")
    reasons = [f"- {r['engine']} {r['recipe']}: {r['status']}: {r['reason']}" for r in rows if r["status"] != "ok"]
    return "\n".join(lines + ([""] + reasons if reasons else []))
