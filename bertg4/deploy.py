"""``bertg4 deploy``: the counterpart of the original ``deploy.py``.

Export the model, reload the exported artifact (or only load one, ``only_infer``),
run it over validation data, and report latency per batch, throughput and
accuracy as a printed table and a JSON record.
"""
from __future__ import annotations

import os
import time
import warnings


from . import data as D
from .api import load
from .checkpoint import add_head, load_checkpoint
from .bench import measure, record, write_json
from .recipe import NotApplicable
from .tasks import accuracy, best_spans, get_task
from .text import QAFeatures, TruncationWarning, check_batch_size


def _eval_inputs(predictor, task, data_path, data_dir, max_eval, log):
    """(features, labels, description) for the task's validation data."""
    if task.kind == "qa":
        qa = D.read_squad(data_path) if data_path else D.sample_qa()
        if not data_path:
            log(f"data: no --data given; using the project's {len(qa)}-question SQuAD-format sample "
                f"({qa.source})")
        n = min(len(qa), max_eval or len(qa))
        feats = predictor.featurize(list(zip(qa.questions[:n], qa.contexts[:n])))
        return feats, None, {"data": qa.source, "examples": n, "of": len(qa)}
    if data_path:
        ts = D.read_tsv(data_path, label_type=float if task.kind == "regression" else int)
    elif task.name in ("SST", "embedding"):
        try:
            ts = D.load_sst2("dev", data_dir)
        except FileNotFoundError:
            ts = D.sample_sst()
            log(f"data: SST-2 dev not found ({', '.join(D.sst2_candidates(data_dir)[:3])}, ...); using "
                f"the project's {len(ts)}-sentence sample ({ts.source}). Pass --data-dir or "
                "--download-data for the real dev set.")
    else:
        ts = D.sample_sst()
        log(f"data: no --data given for {task.name}; timing on the project's sample sentences "
            "paired with each other, without accuracy")
        ts = D.TextSet(ts.first, ts.first[1:] + ts.first[:1], None, ts.source + " (paired)")
    if task.pair and ts.second is None:
        raise ValueError(f"task {task.name} takes sentence pairs but {ts.source} has one text column")
    n = min(len(ts), max_eval or len(ts))
    texts = list(zip(ts.first[:n], ts.second[:n])) if task.pair else ts.first[:n]
    feats = predictor.featurize(texts)
    labels = ts.labels[:n] if ts.labels is not None and task.kind != "embedding" else None
    return feats, labels, {"data": ts.source, "examples": n, "of": len(ts)}


RANDOM_HEAD = "random-init (not fine-tuned)"


def head_of(predictor) -> str | None:
    """Which task head produced the predictor's answers, in words (``None`` for embeddings)."""
    if not predictor.task.head:
        return None
    for note in predictor.notes:
        if "shipped with bertg4" in note:
            return note.split(" head: ", 1)[-1]
        if "not in checkpoint" in note:
            return RANDOM_HEAD
    return f"{predictor.task.head} from the checkpoint ({predictor.source})"


#: engines whose models are exported and reloaded (pt: torch.export; mx: symbol + params)
EXPORTING = ("pt", "mx")


def _load_exported(engine: str, path: str, device: str):
    if engine == "pt":
        from .pt import load_exported
    elif engine == "mx":
        from .mx import load_exported
    else:
        raise ValueError(f"--only-infer reloads an export of engine pt or mx; engine {engine} has none")
    return load_exported(path, device)


def deploy(task="SST", model="embedded", engine="pt", batch_size=128, seq_length=128,
           dtype=None, device="cpu", recipe="baseline", max_iters=20, warmup=3, output_dir="output_dir",
           only_infer=False, exported_model=None, data=None, data_dir=None, config=None,
           vocab=None, max_eval=None, seed=0, json_path=None, progress=True, log=print) -> dict:
    task = get_task(task)
    check_batch_size(batch_size)
    if max_iters < 1:
        raise ValueError(f"--max-iters must be >= 1, got {max_iters}")
    if max_eval is not None and max_eval < 1:
        raise ValueError(f"--max-eval must be >= 1, got {max_eval}")
    timings = {}
    t0 = time.perf_counter()
    if only_infer:
        exported = exported_model or output_dir
        predictor = _load_exported(engine, exported, device)
        if predictor.task.name != task.name:
            raise ValueError(f"{exported} was exported for task {predictor.task.name}, not {task.name}")
        if seq_length != predictor.seq_length:
            log(f"note: the export was made for seq length {predictor.seq_length}; running at "
                f"{seq_length} (the exported graph has a dynamic sequence dimension)")
            predictor.tokenizer.check_seq_len(seq_length)
            predictor.seq_length = seq_length
        timings["load_s"] = time.perf_counter() - t0
        log(f"loaded exported model {exported}")
    else:
        ckpt = load_checkpoint(model, config=config, vocab=vocab, seed=seed)
        if task.head and task.head not in ckpt.heads:  # the head shipped for the task, else random
            add_head(ckpt, task.head, num_labels=task.num_labels, seed=seed, task=task.name)
        predictor = load(model, task, engine, recipe=recipe, device=device, seq_length=seq_length,
                         dtype=dtype, seed=seed, checkpoint=ckpt)
        timings["load_s"] = time.perf_counter() - t0
        for note in predictor.notes:
            log(f"note: {note}")
        exported = None
        if engine in EXPORTING:
            t1 = time.perf_counter()
            try:
                path = predictor.export(output_dir)
            except NotApplicable as e:
                log(f"no export: {e}")
            else:
                timings["export_s"] = time.perf_counter() - t1
                size = os.path.getsize(path)
                if path.endswith("-symbol.json"):  # MXNet: the graph, then its parameters
                    size += os.path.getsize(path[:-len("symbol.json")] + "0000.params")
                log(f"exported {path} ({size / 2**20:.1f} MiB) in {timings['export_s']:.1f} s")
                t1 = time.perf_counter()
                predictor = _load_exported(engine, output_dir, device)
                timings["reload_s"] = time.perf_counter() - t1
                exported = output_dir
        else:
            log(f"engine {engine}: no export step, the model runs as built")
    if predictor.tokenizer is None:
        raise ValueError("the model has no vocabulary: pass --vocab")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        feats, labels, data_info = _eval_inputs(predictor, task, data, data_dir, max_eval, log)
    for w in caught:
        log(f"warning: {w.message}")
    batch = feats.batch if isinstance(feats, QAFeatures) else feats
    data_info["truncated"] = int(batch.truncated.sum())

    t1 = time.perf_counter()
    outputs = predictor.infer(batch, batch_size, progress=progress)
    timings["eval_s"] = time.perf_counter() - t1
    quality = {}
    if labels is not None and task.kind == "classification":
        quality["accuracy"] = accuracy(outputs.argmax(-1), labels)
    elif task.kind == "qa":
        answers = best_spans(outputs, feats)
        quality["sample_answers"] = [a["text"] for a in answers[:3]]
    head = head_of(predictor)
    if head:
        quality["head"] = head
    if task.kind == "qa" and quality.get("sample_answers"):
        meaning = ", answers meaningless" if head == RANDOM_HEAD else ""
        log(f"sample answers (task head: {head}{meaning}): {quality['sample_answers']}")

    timing = measure(predictor, batch, batch_size, warmup=warmup, iters=max_iters, progress=progress)
    rec = record(predictor, timing, **quality, **data_info, timings_s=timings,
                 exported_model=(exported_model or output_dir) if only_infer else exported,
                 notes=predictor.notes)
    json_path = json_path or os.path.join(output_dir, "deploy_record.json")
    write_json(rec, json_path)
    log(format_table([rec]))
    log(f"record written to {json_path}")
    return rec


COLUMNS = [("batch", "batch_size", "{}"), ("seq", "seq_length", "{}"),
           ("ms/batch mean", "latency_ms_mean", "{:.2f}"), ("p50", "latency_ms_p50", "{:.2f}"),
           ("p90", "latency_ms_p90", "{:.2f}"), ("p99", "latency_ms_p99", "{:.2f}"),
           ("ms/seq", "latency_ms_per_sequence", "{:.3f}"), ("seq/s", "sequences_per_s", "{:.1f}"),
           ("TFLOP/s", "tflops_achieved", "{:.3f}"), ("accuracy", "accuracy", "{:.4f}")]


def format_table(records: list[dict]) -> str:
    """A Markdown table of deploy/bench records (latency per batch, in milliseconds)."""
    r0 = records[0]
    head = (f"{r0['task']} | engine {r0['engine']} | recipe {r0['recipe']} ({r0['dtype']}) | "
            f"model {r0['model']} | {r0['device']}: {r0['device_name']}")
    lines = [head, "", "| " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|" + "|".join("---:" for _ in COLUMNS) + "|"]
    for r in records:
        cells = []
        for _, key, fmt in COLUMNS:
            v = r.get(key)
            cells.append("n/a" if v is None else fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    r = records[-1]
    foot = (f"{r['iterations']} timed batches after {r['warmup']} warm-up; evaluated "
            f"{r['examples']} of {r['of']} examples from {r['data']}")
    if r.get("truncated"):
        foot += f"; {r['truncated']} truncated to {r['seq_length']} tokens"
    if r.get("head") == RANDOM_HEAD:
        foot += (f"; task head: {r['head']}, its answers are meaningless" if r.get("task") == "QA" else
                 f"; task head: {r['head']}, accuracy is chance level")
    elif r.get("head"):
        foot += f"; task head: {r['head']}"
    return "\n".join(lines + ["", foot])
