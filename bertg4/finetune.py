"""Fine-tuning a sentence classifier (``bertg4 finetune --task SST``): the counterpart of the
original ``finetune_classifier.py``.

Trains the PyTorch engine's own classification model (BERT + pooler + linear head, as
GluonNLP's ``BERTClassifier``) from any supported checkpoint, and writes the result as a
Hugging Face-style folder (``config.json``, ``model.safetensors`` with bertg4's canonical
tensor names, ``vocab.txt``) that ``bertg4.load``/``deploy`` and the notebooks read like any
other checkpoint. Batches are padded only to their longest sentence and drawn from buckets
of similar length, which is most of the speed on a CPU (SST-2's training phrases are short).
Mixed precision (fp16 autocast with loss scaling) on a GPU, fp32 on a CPU.

The documented CPU schedule (:data:`SCHEDULES` ``"cpu"``) starts from the embedded MiniLM.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from . import data as D
from .bench import command_line, versions
from .checkpoint import Checkpoint, add_head, load_checkpoint
from .tasks import accuracy, get_task
from .text import Tokenizer, TruncationWarning

CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "bertg4",
                     "finetuned")


@dataclasses.dataclass(frozen=True)
class Schedule:
    epochs: float = 1.0          # fractional epochs stop part-way through the last one
    batch_size: int = 32
    max_length: int = 64
    lr: float = 5e-5
    warmup: float = 0.06         # share of the steps with a linear warm-up
    weight_decay: float = 0.01
    max_train: int | None = None  # a seeded random subset of the training set
    seed: int = 0


SCHEDULES = {
    # one epoch over all 67,349 sentences: the embedded MiniLM in about 8.5 minutes on 2 CPU cores
    "cpu": Schedule(epochs=1.0, batch_size=32, max_length=64, lr=1e-4),
    # the full schedule: 3 epochs over all 67,349 sentences (a GPU, or a long CPU run)
    "full": Schedule(epochs=3.0, batch_size=32, max_length=128, lr=5e-5),
    # a smoke run for tests
    "tiny": Schedule(epochs=1.0, batch_size=16, max_length=32, lr=1e-4, max_train=256),
}


def default_output(model: str, task: str, schedule: str) -> str:
    name = "embedded" if model == "embedded" else os.path.basename(os.path.normpath(model))
    return os.path.join(CACHE, f"{name}-{task}-{schedule}")


def save_checkpoint(ckpt: Checkpoint, folder: str, extra: dict | None = None) -> str:
    """Write ``ckpt`` as a folder :func:`bertg4.checkpoint.load_checkpoint` reads back."""
    from safetensors.numpy import save_file
    os.makedirs(folder, exist_ok=True)
    cfg = {**ckpt.config.to_hf_dict(), "model_type": "bert", "architectures": ["BertForSequenceClassification"],
           "bertg4": {"name": ckpt.config.name, "source": ckpt.source, **(extra or {})}}
    if "classifier.weight" in ckpt.weights:
        cfg["num_labels"] = int(ckpt.weights["classifier.weight"].shape[0])
    tmp = os.path.join(folder, "model.safetensors.tmp")
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in ckpt.weights.items()}, tmp)
    os.replace(tmp, os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"do_lower_case": ckpt.do_lower_case}, f)
    vocab_out = os.path.join(folder, "vocab.txt")
    if isinstance(ckpt.vocab, (list, tuple)):
        with open(vocab_out, "w", encoding="utf-8") as f:
            f.write("\n".join(ckpt.vocab) + "\n")
    elif ckpt.vocab and os.path.abspath(ckpt.vocab) != os.path.abspath(vocab_out):
        shutil.copyfile(ckpt.vocab, vocab_out)
    return folder


def _encode(tok: Tokenizer, texts, max_length: int):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        batch = tok.encode_sentences(texts, seq_len=max_length)
    return batch, int(batch.truncated.sum()), [str(w.message) for w in caught]


def _length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length: sort within random chunks of 50 batches."""
    order = rng.permutation(len(lengths))
    chunk = 50 * batch_size
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _tensors(batch, idx, device):
    L = int(batch.valid_length[idx].max())  # pad only to the longest row of this batch
    return (torch.from_numpy(batch.input_ids[idx, :L]).to(device),
            torch.from_numpy(batch.token_types[idx, :L]).to(device),
            torch.from_numpy(batch.valid_length[idx]).to(device))


def evaluate(module, batch, labels, device, batch_size: int = 128) -> tuple[float, np.ndarray]:
    module.eval()
    preds = []
    with torch.inference_mode():
        for s in range(0, len(batch), batch_size):
            idx = np.arange(s, min(s + batch_size, len(batch)))
            preds.append(module(*_tensors(batch, idx, device)).float().argmax(-1).cpu().numpy())
    preds = np.concatenate(preds)
    return accuracy(preds, np.asarray(labels)), preds


def finetune(model: str = "embedded", task: str = "SST", schedule: str | Schedule = "cpu",
             output: str | None = None, device: str = "cpu", data_dir: str | None = None,
             train=None, dev=None, progress: bool = True, log=print, **overrides) -> dict:
    """Fine-tune ``model`` on a sentence-classification task; returns the run's summary.

    ``train``/``dev``: :class:`bertg4.data.TextSet` (default: GLUE SST-2 from
    ``data_dir`` or the usual places). ``overrides`` change single schedule fields
    (``epochs``, ``lr``, ``max_train`` ...). Writes the checkpoint, ``finetune_log.jsonl``
    (one row per logged step) and ``finetune.json`` (the summary) to ``output``.
    """
    from .pt.engine import resolve_device, task_module
    t = get_task(task)
    if t.kind != "classification" or t.pair:
        raise ValueError(f"finetune trains single-sentence classification (SST, CoLA); {t.name} "
                         "is not supported")
    name = schedule if isinstance(schedule, str) else "custom"
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
        schedule = SCHEDULES[schedule]
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Schedule)}
    if unknown:
        raise ValueError(f"unknown schedule fields {sorted(unknown)}")
    sched = dataclasses.replace(schedule, **{k: v for k, v in overrides.items() if v is not None})
    if sched.epochs <= 0 or sched.batch_size < 1 or sched.lr <= 0 or sched.max_length < 3:
        raise ValueError(f"invalid schedule {sched}")
    dev_t = resolve_device(device)
    output = output or default_output(model, t.name, name)
    if train is None:
        train = D.load_sst2("train", data_dir)
    if dev is None:
        dev = D.load_sst2("dev", data_dir)
    if train.labels is None or dev.labels is None:
        raise ValueError("training and evaluation data need labels")

    torch.manual_seed(sched.seed)
    rng = np.random.default_rng(sched.seed)
    ckpt = load_checkpoint(model)
    tok = Tokenizer(ckpt.vocab, lowercase=ckpt.do_lower_case,
                    max_positions=ckpt.config.max_position_embeddings)
    texts, labels = list(train.first), np.asarray(train.labels, dtype=np.int64)
    if sched.max_train is not None and sched.max_train < len(texts):
        keep = np.sort(rng.choice(len(texts), sched.max_train, replace=False))
        texts, labels = [texts[i] for i in keep], labels[keep]
    num_labels = max(int(labels.max()) + 1, t.num_labels)
    if "classifier.weight" not in ckpt.weights or ckpt.weights["classifier.weight"].shape[0] != num_labels:
        add_head(ckpt, "classifier", num_labels, seed=sched.seed)
    if "pooler.dense.weight" not in ckpt.weights:
        raise ValueError(f"{ckpt.source} has no pooler; the classifier reads the pooled [CLS] output")

    train_b, train_cut, _ = _encode(tok, texts, sched.max_length)
    dev_b, dev_cut, _ = _encode(tok, dev.first, sched.max_length)
    for what, n, total in (("training", train_cut, len(train_b)), ("evaluation", dev_cut, len(dev_b))):
        if n:
            log(f"{n} of {total} {what} sentences are longer than {sched.max_length} tokens and were "
                "truncated")

    module = task_module(ckpt.config, t, num_labels)
    from .pt.model import load_weights, torch_name
    load_weights(module, ckpt.weights)
    module.to(dev_t)
    no_decay = ("bias", "LayerNorm", "_ln.", "embed_ln")
    groups = [{"params": [p for n, p in module.named_parameters() if not any(k in n for k in no_decay)],
               "weight_decay": sched.weight_decay},
              {"params": [p for n, p in module.named_parameters() if any(k in n for k in no_decay)],
               "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=sched.lr)
    per_epoch = math.ceil(len(train_b) / sched.batch_size)
    total = max(1, int(round(per_epoch * sched.epochs)))
    warm = max(1, int(sched.warmup * total))
    lr_at = lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    amp = dev_t.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    os.makedirs(output, exist_ok=True)
    log_path = os.path.join(output, "finetune_log.jsonl")
    logf = open(log_path, "w", encoding="utf-8")
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=f"finetune {t.name}", unit="step")
    step, started, seen, running = 0, time.perf_counter(), 0, []
    try:
        while step < total:
            for idx in _length_batches(train_b.valid_length, sched.batch_size, rng):
                if step >= total:
                    break
                module.train()
                ids, types, valid = _tensors(train_b, idx, dev_t)
                y = torch.from_numpy(labels[idx]).to(dev_t)
                with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                    loss = F.cross_entropy(module(ids, types, valid).float(), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                scaler.step(opt)
                scaler.update()
                scheduler.step()
                step, seen = step + 1, seen + len(idx)
                running.append(float(loss.detach()))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{np.mean(running[-50:]):.3f}")
                if step % 50 == 0 or step == total:
                    logf.write(json.dumps({"step": step, "sentences": seen, "loss": float(np.mean(running[-50:])),
                                           "lr": scheduler.get_last_lr()[0],
                                           "elapsed_s": time.perf_counter() - started}) + "\n")
                    logf.flush()
    finally:
        if bar is not None:
            bar.close()
    train_s = time.perf_counter() - started
    acc, _ = evaluate(module, dev_b, dev.labels, dev_t)
    total_s = time.perf_counter() - started
    logf.write(json.dumps({"step": step, "dev_accuracy": acc, "elapsed_s": total_s}) + "\n")
    logf.close()

    state = {k: v.detach().float().cpu().numpy() for k, v in module.state_dict().items()}
    inverse = {torch_name(k): k for k in ckpt.weights}
    for tname, arr in state.items():
        ckpt.weights[inverse[tname]] = arr
    summary = {"task": t.name, "model": model, "source": ckpt.source, "schedule": name,
               **dataclasses.asdict(sched), "train_sentences": len(train_b), "train_source": train.source,
               "truncated_train": train_cut, "steps": step, "dev_source": dev.source,
               "dev_sentences": len(dev_b), "truncated_dev": dev_cut, "dev_accuracy": acc,
               "train_seconds": train_s, "total_seconds": total_s, "device": str(dev_t),
               "device_name": (torch.cuda.get_device_name(dev_t) if dev_t.type == "cuda" else _cpu()),
               "mixed_precision": amp, "versions": versions(), "command": command_line(),
               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "output": os.path.abspath(output)}
    ckpt.notes = [n for n in ckpt.notes if "randomly initialised" not in n]
    ckpt.source = f"{ckpt.source} fine-tuned on {t.name} ({name} schedule)"
    save_checkpoint(ckpt, output, extra={"finetune": {k: summary[k] for k in (
        "task", "schedule", "dev_accuracy", "train_sentences", "epochs", "lr", "max_length")}})
    with open(os.path.join(output, "finetune.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=str)
    log(f"{t.name} dev accuracy {100 * acc:.2f} % after {step} steps ({len(train_b)} sentences, "
        f"{sched.epochs:g} epochs) in {total_s / 60:.1f} min on {summary['device_name']}; "
        f"checkpoint: {output}")
    return summary


def _cpu() -> str:
    from .pt.engine import cpu_name
    return cpu_name()


def cached(model: str = "embedded", task: str = "SST", schedule: str = "cpu") -> str | None:
    """The folder of an earlier fine-tuning run with these arguments, if it finished."""
    folder = default_output(model, get_task(task).name, schedule)
    done = os.path.join(folder, "finetune.json")
    return folder if os.path.isfile(done) and os.path.isfile(os.path.join(folder, "model.safetensors")) else None
