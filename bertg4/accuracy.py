"""Does every optimization keep the answers? Accuracy and agreement per engine and rung.

For a fine-tuned classifier (``bertg4 finetune``), every engine/recipe pair that runs on the
device predicts the whole evaluation set; each row gives its accuracy, the share of
predictions equal to the fp32 baseline's, and how far its logits are from the baseline's.
Pairs that cannot run on the device are rows with status "not applicable" and the reason.
"""
from __future__ import annotations

import time

import numpy as np

from . import data as D
from .api import load
from .checkpoint import load_checkpoint
from .recipe import NotApplicable, get_recipe, ladder
from .tasks import accuracy, get_task

#: what each engine is asked to run (the hf reference runs as shipped: dtype and attention only)
DEFAULT_RECIPES = {
    "pt": [r.name for r in ladder()] + ["interleaved-fp32", "graph-pass-fp32", "sdpa-fp32", "sdpa-fp16", "bf16"],
    "hf": ["baseline", "sdpa-fp32", "sdpa-fp16"],
}


def rung_accuracy(model: str, task="SST", device: str = "cpu", engines=("pt", "hf"), recipes=None,
                  data=None, seq_length: int = 128, batch_size: int = 64, log=print) -> list[dict]:
    """One row per (engine, recipe): accuracy on ``data`` (default: SST-2 dev), agreement
    with the pt fp32 baseline's predictions, max-abs logit difference, wall time."""
    t = get_task(task)
    if t.kind != "classification":
        raise ValueError(f"rung_accuracy scores classification tasks; {t.name} is {t.kind}")
    data = data if data is not None else D.load_sst2("dev")
    if data.labels is None:
        raise ValueError(f"{data.source}: no labels to score against")
    ckpt = load_checkpoint(model)
    if "classifier.weight" not in ckpt.weights:
        raise ValueError(f"{ckpt.source} has no classifier head: fine-tune it first "
                         "(bertg4 finetune), accuracy of a random head means nothing")
    labels = np.asarray(data.labels)
    texts = data.first if data.second is None else list(zip(data.first, data.second))
    rows, ref = [], None
    # the reference (the pt fp32 baseline) comes first, whatever else is asked for
    pairs = [("pt", "baseline")] + [(e, n) for e in engines for n in (recipes or DEFAULT_RECIPES[e])
                                    if (e, get_recipe(n).name) != ("pt", "baseline")]
    for engine, name in pairs:
        recipe = get_recipe(name)
        row = {"kind": "accuracy", "task": t.name, "engine": engine, "recipe": recipe.name,
               "dtype": recipe.dtype, "device": device, "data": data.source, "examples": len(data),
               "model": ckpt.source}
        try:
            p = load(task=t, engine=engine, recipe=recipe, device=device, seq_length=seq_length,
                     checkpoint=ckpt)
        except NotApplicable as e:
            rows.append({**row, "status": "not applicable", "reason": str(e)})
            log(f"{engine:>3} {recipe.name:<20} not applicable")
            continue
        started = time.perf_counter()
        logits = p.infer(p.featurize(texts), batch_size).astype(np.float64)
        seconds = time.perf_counter() - started
        if ref is None:
            ref = logits
        preds = logits.argmax(-1)
        row.update(status="ok", device_name=p.device_name(), finite=bool(np.isfinite(logits).all()),
                   accuracy=accuracy(preds, labels),
                   agreement_vs_fp32=float((preds == ref.argmax(-1)).mean()),
                   disagreements=int((preds != ref.argmax(-1)).sum()),
                   max_abs_logit_diff=float(np.abs(logits - ref).max()), seconds=seconds)
        rows.append(row)
        log(f"{engine:>3} {recipe.name:<20} accuracy {100 * row['accuracy']:.2f} %, agreement "
            f"{100 * row['agreement_vs_fp32']:.2f} % ({row['disagreements']} differ), "
            f"max |Δlogit| {row['max_abs_logit_diff']:.2e}")
        del p
    return rows


def format_accuracy(rows: list[dict]) -> str:
    lines = ["| engine | recipe | dtype | accuracy | agreement with fp32 | differ | max abs logit diff |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['engine']} | {r['recipe']} | {r['dtype']} | n/a | n/a | n/a | n/a |")
            continue
        lines.append(f"| {r['engine']} | {r['recipe']} | {r['dtype']} | {100 * r['accuracy']:.2f} % | "
                     f"{100 * r['agreement_vs_fp32']:.2f} % | {r['disagreements']} | "
                     f"{r['max_abs_logit_diff']:.1e} |")
    return "\n".join(lines)
