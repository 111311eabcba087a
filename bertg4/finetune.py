"""Fine-tuning a sentence classifier (``bertg4 finetune --task SST``) or a SQuAD span
predictor (``bertg4 finetune --task QA``): the counterparts of the original
``finetune_classifier.py`` and ``finetune_squad.py``.

Trains the PyTorch engine's own classification model (BERT + pooler + linear head, as
GluonNLP's ``BERTClassifier``) from any supported checkpoint, and writes the result as a
Hugging Face-style folder (``config.json``, ``model.safetensors`` with bertg4's canonical
tensor names, ``vocab.txt``) that ``bertg4.load``/``deploy`` and the notebooks read like any
other checkpoint. Batches are padded only to their longest sentence and drawn from buckets
of similar length, which is most of the speed on a CPU (SST-2's training phrases are short).
Mixed precision (fp16 autocast with loss scaling) on a GPU, fp32 on a CPU.

For QA the model is BERT + a ``qa_outputs`` linear layer giving a start and an end logit per
token (GluonNLP's ``BertForQA``); questions and passages are cut into doc-stride windows
(:meth:`bertg4.text.Tokenizer.encode_squad`), each window is trained with the cross-entropy
of the answer's first and last token (a window that does not hold the whole answer points
both at ``[CLS]``, as in BERT's ``run_squad``), and the dev set is scored with SQuAD v1.1
exact match and F1 after n-best span decoding over the windows (:func:`bertg4.tasks.nbest_spans`).

The documented CPU schedules (:data:`SCHEDULES` / :data:`QA_SCHEDULES` ``"cpu"``) start from
the embedded MiniLM. The ``probe`` schedule trains no encoder weight: it fits a linear
classifier head on the frozen encoder's pooled output (:func:`fit_logistic`) and writes it
alone as well (:func:`write_head`); ``bertg4/heads/`` ships the one it made for SST-2.
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
from .system import command_line, versions
from .checkpoint import Checkpoint, add_head, load_checkpoint
from .tasks import accuracy, get_task, nbest_spans, squad_scores
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
    max_train: int | None = None  # a seeded random subset of the training set (questions for QA)
    seed: int = 0
    max_steps: int | None = None  # stop after this many optimizer steps (the schedule's decay ends there)
    doc_stride: int = 128        # QA: token distance between the starts of a passage's windows
    max_query_length: int = 64   # QA: longer questions are cut (and reported)
    dropout: float = 0.1         # hidden and attention-probability dropout while training (BERT's 0.1)
    # probe: the L2 strengths tried (on standardised features) and the share of the training
    # set held out to choose among them; the chosen strength is refitted on the whole set
    l2: tuple = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    holdout: float = 0.1


SCHEDULES = {
    # one epoch over all 67,349 sentences: the embedded MiniLM in about 8.5 minutes on 2 CPU
    # cores. No dropout: measured from the embedded MiniLM, one epoch reached 89.91 % without
    # and 88.99 % with BERT's 0.1 (results/2026-11-27_cpu_finetune/)
    "cpu": Schedule(epochs=1.0, batch_size=32, max_length=64, lr=1e-4, dropout=0.0),
    # the full schedule: 3 epochs over all 67,349 sentences (a GPU, or a long CPU run), with
    # BERT's dropout 0.1 (from the embedded MiniLM: 89.22 % with it, 88.88 % without)
    "full": Schedule(epochs=3.0, batch_size=32, max_length=128, lr=5e-5),
    # a smoke run for tests
    "tiny": Schedule(epochs=1.0, batch_size=16, max_length=32, lr=1e-4, max_train=256),
    # a linear probe: the encoder stays frozen; logistic regression (L-BFGS, L2 chosen on a
    # held-out tenth of the training subset) on the pooled [CLS] output, the input of the
    # classifier head every engine runs. The head shipped in bertg4/heads/ came from this
    # schedule (batch_size is the embedding batch; epochs, lr and dropout are unused)
    "probe": Schedule(epochs=1.0, batch_size=256, max_length=128, lr=1.0, dropout=0.0, max_train=20000),
}

QA_SCHEDULES = {
    # any SQuAD-format training file on a CPU: up to 20 epochs, at most 300 steps of 16 windows
    # (data/squad_small/train.json: 62 questions, 80 steps, about 3 minutes on 2 CPU cores)
    # No dropout: the schedule is meant to fit a small file closely (and its recorded results
    # in results/2026-11-27_cpu_qa/ were made without)
    "cpu": Schedule(epochs=20.0, batch_size=16, max_length=384, lr=1e-4, warmup=0.1, max_steps=300,
                    dropout=0.0),
    # the settings of GluonNLP's finetune_squad.py on SQuAD v1.1: 2 epochs, seq 384, stride 128,
    # lr 3e-5, batch 32, 10 % warm-up, dropout 0.1 (a GPU)
    "full": Schedule(epochs=2.0, batch_size=32, max_length=384, lr=3e-5, warmup=0.1),
    # a smoke run for tests
    "tiny": Schedule(epochs=1.0, batch_size=8, max_length=128, lr=1e-4, warmup=0.1, max_train=16),
}
N_BEST, MAX_ANSWER_LENGTH = 20, 30  # finetune_squad.py's n-best decoding defaults


def default_output(model: str, task: str, schedule: str) -> str:
    name = "embedded" if model == "embedded" else os.path.basename(os.path.normpath(model))
    return os.path.join(CACHE, f"{name}-{task}-{schedule}")


def save_checkpoint(ckpt: Checkpoint, folder: str, extra: dict | None = None) -> str:
    """Write ``ckpt`` as a folder :func:`bertg4.checkpoint.load_checkpoint` reads back."""
    from safetensors.numpy import save_file
    os.makedirs(folder, exist_ok=True)
    arch = ("BertForQuestionAnswering" if "qa_outputs.weight" in ckpt.weights
            and "classifier.weight" not in ckpt.weights else "BertForSequenceClassification")
    cfg = {**ckpt.config.to_hf_dict(), "model_type": "bert", "architectures": [arch],
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


def _schedule(table: dict, schedule, overrides: dict) -> tuple[str, Schedule]:
    name = schedule if isinstance(schedule, str) else "custom"
    if isinstance(schedule, str):
        if schedule not in table:
            raise ValueError(f"unknown schedule {schedule!r}: choose one of {', '.join(table)}")
        schedule = table[schedule]
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Schedule)}
    if unknown:
        raise ValueError(f"unknown schedule fields {sorted(unknown)}")
    sched = dataclasses.replace(schedule, **{k: v for k, v in overrides.items() if v is not None})
    bad = [what for what, wrong in (
        (f"epochs {sched.epochs:g} (must be > 0)", sched.epochs <= 0),
        (f"batch_size {sched.batch_size} (must be >= 1)", sched.batch_size < 1),
        (f"lr {sched.lr:g} (must be > 0)", sched.lr <= 0),
        (f"max_length {sched.max_length} (must be >= 3)", sched.max_length < 3),
        (f"max_steps {sched.max_steps} (must be >= 1)", sched.max_steps is not None and sched.max_steps < 1),
        (f"doc_stride {sched.doc_stride} (must be >= 1)", sched.doc_stride < 1),
        (f"max_query_length {sched.max_query_length} (must be >= 1)", sched.max_query_length < 1),
        (f"dropout {sched.dropout:g} (must be in [0, 1))", not 0.0 <= sched.dropout < 1.0),
        (f"holdout {sched.holdout:g} (must be in (0, 1))", not 0.0 < sched.holdout < 1.0),
        (f"l2 {sched.l2} (must be positive numbers)",
         not sched.l2 or any(not isinstance(v, (int, float)) or v <= 0 for v in sched.l2))) if wrong]
    if bad:
        raise ValueError(f"invalid schedule {name!r}: {'; '.join(bad)}")
    return name, sched


def _optimizer(module, sched: Schedule, total: int):
    no_decay = ("bias", "LayerNorm", "_ln.", "embed_ln")
    groups = [{"params": [p for n, p in module.named_parameters() if not any(k in n for k in no_decay)],
               "weight_decay": sched.weight_decay},
              {"params": [p for n, p in module.named_parameters() if any(k in n for k in no_decay)],
               "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=sched.lr)
    warm = max(1, int(sched.warmup * total))
    lr_at = lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))  # noqa: E731
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_at)


def _total_steps(rows: int, sched: Schedule) -> int:
    per_epoch = math.ceil(rows / sched.batch_size)
    total = max(1, int(round(per_epoch * sched.epochs)))
    return min(total, sched.max_steps) if sched.max_steps is not None else total


def _trainable(ckpt: Checkpoint, t, sched: Schedule, dev_t, num_labels: int | None = None):
    """The task's PyTorch module with the schedule's dropout, holding ``ckpt``'s weights, on ``dev_t``."""
    from .pt.engine import task_module
    from .pt.model import load_weights
    module = task_module(ckpt.config, t, num_labels, dropout=sched.dropout, attention_dropout=sched.dropout)
    return load_weights(module, ckpt.weights).to(dev_t)


def _train(module, sched: Schedule, lengths: np.ndarray, loss_of, dev_t, total: int, logf,
           rng: np.random.Generator, progress: bool, desc: str) -> tuple[int, int, float]:
    """The training loop shared by every task: AdamW, linear warm-up and decay, clipping at 1.0,
    fp16 autocast with loss scaling on CUDA. ``loss_of(idx)`` is one batch's loss; one log row
    (mean loss since the previous row) every ``min(50, total // 20)`` steps and at the end."""
    opt, scheduler = _optimizer(module, sched, total)
    amp = dev_t.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    log_every = max(1, min(50, total // 20))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=desc, unit="step")
    step, started, seen, running, since_log = 0, time.perf_counter(), 0, [], []
    try:
        while step < total:
            for idx in _length_batches(lengths, sched.batch_size, rng):
                if step >= total:
                    break
                module.train()
                with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                    loss = loss_of(idx)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                scaler.step(opt)
                scaler.update()
                scheduler.step()
                step, seen = step + 1, seen + len(idx)
                value = float(loss.detach())
                if not math.isfinite(value) and not amp:
                    raise RuntimeError(f"training loss is {value} at step {step}: lower the learning "
                                       f"rate (now {sched.lr:g})")
                running.append(value)
                since_log.append(value)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{np.mean(running[-50:]):.3f}")
                if step % log_every == 0 or step == total:
                    logf.write(json.dumps({"step": step, "examples": seen, "loss": float(np.mean(since_log)),
                                           "lr": scheduler.get_last_lr()[0],
                                           "elapsed_s": time.perf_counter() - started}) + "\n")
                    logf.flush()
                    since_log = []
    finally:
        if bar is not None:
            bar.close()
    return step, seen, time.perf_counter() - started


def _write_back(module, ckpt: Checkpoint) -> None:
    from .pt.model import torch_name
    state = {k: v.detach().float().cpu().numpy() for k, v in module.state_dict().items()}
    inverse = {torch_name(k): k for k in ckpt.weights}
    for tname, arr in state.items():
        ckpt.weights[inverse[tname]] = arr


def finetune(model: str = "embedded", task: str = "SST", schedule: str | Schedule = "cpu",
             output: str | None = None, device: str = "cpu", data_dir: str | None = None,
             train=None, dev=None, progress: bool = True, log=print, **overrides) -> dict:
    """Fine-tune ``model`` on a sentence-classification task or on SQuAD-style QA; returns
    the run's summary.

    ``train``/``dev``: for SST/CoLA a :class:`bertg4.data.TextSet` or a GLUE-style TSV path
    (default: GLUE SST-2 from ``data_dir`` or the usual places); for QA a
    :class:`bertg4.data.QASet` or a SQuAD v1.1-format JSON path (default: SQuAD v1.1
    ``train-v1.1.json``/``dev-v1.1.json`` from ``data_dir`` or the usual places). ``overrides``
    change single schedule fields (``epochs``, ``lr``, ``max_train``, ``max_steps``,
    ``doc_stride`` ...). Writes the checkpoint, ``finetune_log.jsonl`` (one row per logged
    step) and ``finetune.json`` (the summary) to ``output``; for QA also ``predictions.json``
    (the dev answers).
    """
    t = get_task(task)
    if t.kind == "qa":
        return _finetune_qa(model, t, schedule, output, device, data_dir, train, dev, progress, log,
                            overrides)
    from .pt.engine import resolve_device
    if t.kind != "classification" or t.pair:
        raise ValueError(f"finetune trains single-sentence classification (SST, CoLA) and QA; {t.name} "
                         "is not supported")
    name, sched = _schedule(SCHEDULES, schedule, overrides)
    dev_t = resolve_device(device)
    output = output or default_output(model, t.name, name)
    if isinstance(train, (str, os.PathLike)):
        train = D.read_tsv(os.fspath(train))
    if isinstance(dev, (str, os.PathLike)):
        dev = D.read_tsv(os.fspath(dev))
    if train is None:
        train = D.load_sst2("train", data_dir)
    if dev is None:
        dev = D.load_sst2("dev", data_dir)
    if train.labels is None or dev.labels is None:
        raise ValueError("training and evaluation data need labels")
    if name == "probe":
        return _finetune_probe(model, t, name, sched, output, dev_t, train, dev, progress, log)

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

    module = _trainable(ckpt, t, sched, dev_t, num_labels)
    total = _total_steps(len(train_b), sched)

    def loss_of(idx):
        y = torch.from_numpy(labels[idx]).to(dev_t)
        return F.cross_entropy(module(*_tensors(train_b, idx, dev_t)).float(), y)

    os.makedirs(output, exist_ok=True)
    started = time.perf_counter()
    with open(os.path.join(output, "finetune_log.jsonl"), "w", encoding="utf-8") as logf:
        step, seen, train_s = _train(module, sched, train_b.valid_length, loss_of, dev_t, total, logf,
                                     rng, progress, f"finetune {t.name}")
        acc, _ = evaluate(module, dev_b, dev.labels, dev_t)
        total_s = time.perf_counter() - started
        logf.write(json.dumps({"step": step, "dev_accuracy": acc, "elapsed_s": total_s}) + "\n")

    _write_back(module, ckpt)
    summary = {"task": t.name, "model": model, "source": ckpt.source, "schedule": name,
               **dataclasses.asdict(sched), "train_sentences": len(train_b), "train_source": train.source,
               "truncated_train": train_cut, "steps": step, "dev_source": dev.source,
               "dev_sentences": len(dev_b), "truncated_dev": dev_cut, "dev_accuracy": acc,
               **_run_facts(dev_t, train_s, total_s, output)}
    _save(ckpt, t, name, output, summary, ("task", "schedule", "dev_accuracy", "train_sentences", "epochs",
                                           "lr", "max_length"))
    log(f"{t.name} dev accuracy {100 * acc:.2f} % after {step} steps ({len(train_b)} sentences, "
        f"{sched.epochs:g} epochs) in {total_s / 60:.1f} min on {summary['device_name']}; "
        f"checkpoint: {output}")
    return summary


def _run_facts(dev_t, train_s: float, total_s: float, output: str) -> dict:
    return {"train_seconds": train_s, "total_seconds": total_s, "device": str(dev_t),
            "device_name": (torch.cuda.get_device_name(dev_t) if dev_t.type == "cuda" else _cpu()),
            "mixed_precision": dev_t.type == "cuda", "versions": versions(), "command": command_line(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "output": os.path.abspath(output)}


def _save(ckpt: Checkpoint, t, name: str, output: str, summary: dict, keep) -> None:
    ckpt.notes = [n for n in ckpt.notes if "randomly initialised" not in n]
    ckpt.source = f"{ckpt.source} fine-tuned on {t.name} ({name} schedule)"
    save_checkpoint(ckpt, output, extra={"finetune": {k: summary[k] for k in keep}})
    with open(os.path.join(output, "finetune.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=str)


# --- linear probe (the head shipped in bertg4/heads/) -------------------------------------------

def probe_features(ckpt: Checkpoint, texts, max_length: int, device="cpu", batch_size: int = 256,
                   progress: bool = False, log=print) -> dict:
    """The frozen encoder's features of ``texts``, from one pass: ``pooled``, tanh(pooler([CLS])),
    what the classifier head of every engine reads; and ``mean``, the L2-normalised mean of the
    valid tokens, the ``embedding`` task's output. Sentences are batched by length, so each
    batch is padded only to its longest sentence; longer sentences are cut and counted
    (``truncated``)."""
    from .pt.model import ForEmbedding, ForEncoding, load_weights
    if "pooler.dense.weight" not in ckpt.weights:
        raise ValueError(f"{ckpt.source} has no pooler; the classifier reads the pooled [CLS] output")
    dev_t = torch.device(device)
    module = load_weights(ForEncoding(ckpt.config), {k: v for k, v in ckpt.weights.items()
                                                     if not k.startswith(("classifier.", "qa_outputs."))})
    module = module.to(dev_t).eval()
    tok = Tokenizer(ckpt.vocab, lowercase=ckpt.do_lower_case,
                    max_positions=ckpt.config.max_position_embeddings)
    batch, cut, _ = _encode(tok, list(texts), max_length)
    if cut:
        log(f"{cut} of {len(batch)} sentences are longer than {max_length} tokens and were truncated")
    h = ckpt.config.hidden_size
    out = {"pooled": np.zeros((len(batch), h), np.float32), "mean": np.zeros((len(batch), h), np.float32),
           "truncated": cut}
    order = np.argsort(batch.valid_length, kind="stable")
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(batch), desc="probe features", unit="sentence")
    with torch.inference_mode():
        for idx in chunks:
            ids, types, valid = _tensors(batch, idx, dev_t)
            seq, pooled = module(ids, types, valid)
            out["pooled"][idx] = pooled.float().cpu().numpy()
            out["mean"][idx] = ForEmbedding.pool(seq, valid).float().cpu().numpy()
            if bar is not None:
                bar.update(len(idx))
    if bar is not None:
        bar.close()
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, num_labels: int, l2: float,
                 max_iter: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by L-BFGS (float64, from zeros: deterministic).

    Minimises the mean cross-entropy plus ``l2 / 2 * |W|^2`` on standardised features and
    returns the ``(num_labels, dim)`` weight and ``(num_labels,)`` bias for the raw features
    (the standardisation folded in), i.e. a ``classifier`` head."""
    X = torch.from_numpy(np.asarray(x, np.float64))
    Y = torch.from_numpy(np.asarray(y, np.int64))
    mu, sd = X.mean(0), X.std(0).clamp_min(1e-8)
    Xs = (X - mu) / sd
    W = torch.zeros(num_labels, X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_labels, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(Xs @ W.T + b, Y) + 0.5 * l2 * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        w_raw = W / sd
        b_raw = b - w_raw @ mu
    return w_raw.numpy().astype(np.float32), b_raw.numpy().astype(np.float32)


def _probe_accuracy(w, b, x, y) -> float:
    return accuracy((np.asarray(x, np.float64) @ w.T.astype(np.float64) + b).argmax(-1), y)


def choose_l2(x, y, num_labels: int, grid, holdout: float, rng: np.random.Generator) -> tuple[float, dict]:
    """The L2 strength of ``grid`` with the best accuracy on a held-out share of the training
    rows (the larger strength on a tie), and every strength's held-out accuracy."""
    perm = rng.permutation(len(y))
    n_out = max(1, int(round(holdout * len(y))))
    out, fit = perm[:n_out], perm[n_out:]
    if not len(fit) or len(np.unique(y[fit])) < 2:
        raise ValueError(f"{len(y)} training rows are too few to hold out {holdout:g} and still fit "
                         "two classes")
    scores = {}
    for l2 in grid:
        w, b = fit_logistic(x[fit], y[fit], num_labels, l2)
        scores[float(l2)] = _probe_accuracy(w, b, x[out], y[out])
    best = max(scores, key=lambda k: (scores[k], k))
    return best, scores


def _finetune_probe(model, t, name, sched: Schedule, output, dev_t, train, dev, progress, log) -> dict:
    """``--schedule probe``: a classifier head fitted on the frozen encoder's pooled output.

    Also fits the same probe on the mean-pooled embedding and reports its accuracy: the
    comparison of the two designs (only the pooled one is a head the engines run)."""
    rng = np.random.default_rng(sched.seed)
    output = output or default_output(model, t.name, name)
    ckpt = load_checkpoint(model)
    texts, labels = list(train.first), np.asarray(train.labels, dtype=np.int64)
    train_data = {"file": os.path.basename(train.source), "rows": len(texts),
                  "sha256": D.sha256(train.source) if os.path.isfile(train.source) else None}
    if sched.max_train is not None and sched.max_train < len(texts):
        keep = np.sort(rng.choice(len(texts), sched.max_train, replace=False))
        texts, labels = [texts[i] for i in keep], labels[keep]
        train_data["subset"] = f"{len(texts)} rows drawn without replacement, numpy seed {sched.seed}"
    dev_data = {"file": os.path.basename(dev.source), "rows": len(dev),
                "sha256": D.sha256(dev.source) if os.path.isfile(dev.source) else None}
    num_labels = max(int(labels.max()) + 1, t.num_labels)
    started = time.perf_counter()
    train_x = probe_features(ckpt, texts, sched.max_length, dev_t, sched.batch_size, progress, log)
    dev_x = probe_features(ckpt, dev.first, sched.max_length, dev_t, sched.batch_size, progress, log)
    embed_s = time.perf_counter() - started
    designs = {}
    for kind in ("pooled", "mean"):
        l2, scores = choose_l2(train_x[kind], labels, num_labels, sched.l2, sched.holdout,
                               np.random.default_rng(sched.seed))
        w, b = fit_logistic(train_x[kind], labels, num_labels, l2)
        designs[kind] = {"l2": l2, "holdout_accuracy": scores, "weight": w, "bias": b,
                         "train_accuracy": _probe_accuracy(w, b, train_x[kind], labels),
                         "dev_accuracy": _probe_accuracy(w, b, dev_x[kind], np.asarray(dev.labels))}
    total_s = time.perf_counter() - started
    chosen = designs["pooled"]
    ckpt.weights["classifier.weight"], ckpt.weights["classifier.bias"] = chosen["weight"], chosen["bias"]
    acc = chosen["dev_accuracy"]
    summary = {"task": t.name, "model": model, "source": ckpt.source, "schedule": name,
               **dataclasses.asdict(sched), "design": "pooled [CLS] (tanh(pooler)) -> Linear, encoder frozen",
               "l2_chosen": chosen["l2"], "holdout_accuracy": chosen["holdout_accuracy"],
               "train_accuracy": chosen["train_accuracy"], "train_sentences": len(texts),
               "truncated_train": train_x["truncated"], "truncated_dev": dev_x["truncated"],
               "train_source": train.source, "train_data": train_data, "dev_source": dev.source,
               "dev_data": dev_data, "dev_sentences": len(dev), "dev_accuracy": acc,
               "mean_pooled_probe": {k: v for k, v in designs["mean"].items() if k not in ("weight", "bias")},
               "embedding_seconds": embed_s, "steps": 0,
               **_run_facts(dev_t, total_s - embed_s, total_s, output)}
    os.makedirs(output, exist_ok=True)
    write_head(output, ckpt, summary)
    _save(ckpt, t, name, output, summary, ("task", "schedule", "dev_accuracy", "train_sentences",
                                           "l2_chosen", "max_length"))
    log(f"{t.name} linear probe: dev accuracy {100 * acc:.2f} % (pooled [CLS], L2 {chosen['l2']:g} "
        f"chosen on {sched.holdout:.0%} of the training rows); the same probe on the mean-pooled "
        f"embedding: {100 * designs['mean']['dev_accuracy']:.2f} %; {len(texts)} training sentences, "
        f"{total_s / 60:.1f} min on {summary['device_name']}; head: {os.path.join(output, HEAD_FILE)}")
    return summary


HEAD_FILE, HEAD_RECORD = "head.safetensors", "head.json"


def write_head(folder: str, ckpt: Checkpoint, summary: dict) -> tuple[str, str]:
    """The classifier head alone (a few kB) and its record: what bertg4/heads/ ships."""
    from safetensors.numpy import save_file
    from .checkpoint import backbone_fingerprint
    head = {k: np.ascontiguousarray(ckpt.weights[k], np.float32) for k in ("classifier.weight",
                                                                           "classifier.bias")}
    path = os.path.join(folder, HEAD_FILE)
    save_file(head, path)
    record = {"task": summary["task"], "head": "classifier", "design": summary["design"],
              "shapes": {k: list(v.shape) for k, v in head.items()}, "sha256": D.sha256(path),
              "backbone": summary["model"], "backbone_fingerprint": backbone_fingerprint(ckpt.weights),
              "backbone_fingerprint_float16": backbone_fingerprint(ckpt.weights, float16=True),
              **{k: summary[k] for k in ("schedule", "max_length", "l2", "holdout", "l2_chosen",
                                         "holdout_accuracy", "train_accuracy", "train_sentences",
                                         "train_data", "truncated_train", "seed", "dev_data",
                                         "truncated_dev", "dev_accuracy", "mean_pooled_probe", "command",
                                         "date", "versions", "device_name", "total_seconds")}}
    with open(os.path.join(folder, HEAD_RECORD), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, default=str)
    return path, os.path.join(folder, HEAD_RECORD)


# --- question answering (SQuAD v1.1) -----------------------------------------------------------

def _encode_squad(tok: Tokenizer, qa, sched: Schedule):
    """Features and how many questions were cut (the caller logs that count, once)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        feats = tok.encode_squad(qa.questions, qa.contexts, seq_len=sched.max_length,
                                 max_query_length=min(sched.max_query_length, sched.max_length - 4),
                                 doc_stride=sched.doc_stride)
    return feats, int(feats.query_truncated.sum())


def qa_targets(feats, qa) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets per window: the token positions of the first answer's first and last
    token, and whether the window holds the whole answer (otherwise both positions are 0, the
    ``[CLS]`` token, as in BERT's ``run_squad``). Raises :class:`bertg4.text.TextError`, naming
    the question, for an answer without a valid ``answer_start`` or without any token."""
    from .text import TextError
    offsets, example_index = np.asarray(feats.offsets), np.asarray(feats.example_index)
    rows = len(example_index)
    starts, ends, inside = np.zeros(rows, np.int64), np.zeros(rows, np.int64), np.zeros(rows, bool)
    by_example: dict[int, list[int]] = {}
    for r, e in enumerate(example_index):
        by_example.setdefault(int(e), []).append(r)
    for e, rs in by_example.items():
        spans = qa.spans(e)
        if not spans:
            raise TextError(f"{qa.source}: question {qa.ids[e]!r} has no answer to train on")
        a0, a1 = spans[0]
        # the passage's tokens: the union of its windows' character spans
        tokens = np.unique(np.concatenate([offsets[r][offsets[r, :, 0] >= 0] for r in rs]), axis=0)
        cover = tokens[(tokens[:, 1] > a0) & (tokens[:, 0] < a1)]
        if not len(cover):
            raise TextError(f"{qa.source}: question {qa.ids[e]!r}: the answer "
                            f"{qa.contexts[e][a0:a1]!r} covers no token of the passage")
        first, last = cover[0, 0], cover[-1, 0]
        for r in rs:
            s_pos = np.flatnonzero(offsets[r, :, 0] == first)
            e_pos = np.flatnonzero(offsets[r, :, 0] == last)
            if s_pos.size and e_pos.size:
                starts[r], ends[r], inside[r] = s_pos[0], e_pos[-1], True
    return starts, ends, inside


def qa_logits(module, feats, device, batch_size: int = 64) -> np.ndarray:
    """``(rows, seq, 2)`` start/end logits of a PyTorch QA module over every window."""
    batch = feats.batch
    out = np.zeros((len(batch), batch.seq_len, 2), np.float32)
    module.eval()
    with torch.inference_mode():
        for s in range(0, len(batch), batch_size):
            idx = np.arange(s, min(s + batch_size, len(batch)))
            y = module(*_tensors(batch, idx, device)).float().cpu().numpy()
            out[idx, :y.shape[1]] = y
    return out


def evaluate_qa(module, feats, qa, device, batch_size: int = 64) -> tuple[dict, dict]:
    """SQuAD v1.1 exact match / F1 (percent) of a QA module, with the n-best decoding of
    GluonNLP's ``finetune_squad.py`` (20 candidates, answers up to 30 tokens); returns the
    scores and ``{question id: answer}``."""
    logits = qa_logits(module, feats, device, batch_size)
    nbest = nbest_spans(logits, feats, n_best=N_BEST, max_answer_length=MAX_ANSWER_LENGTH)
    predictions = {q: (c[0]["text"] if c else "") for q, c in zip(qa.ids, nbest)}
    return squad_scores(predictions, qa), predictions


def _qa_set(value, split: str, data_dir):
    if isinstance(value, (str, os.PathLike)):
        return D.read_squad(os.fspath(value))
    return value if value is not None else D.load_squad(split, data_dir)


def _finetune_qa(model, t, schedule, output, device, data_dir, train, dev, progress, log, overrides):
    from .pt.engine import resolve_device
    name, sched = _schedule(QA_SCHEDULES, schedule, overrides)
    dev_t = resolve_device(device)
    output = output or default_output(model, t.name, name)
    train, dev = _qa_set(train, "train", data_dir), _qa_set(dev, "dev", data_dir)

    torch.manual_seed(sched.seed)
    rng = np.random.default_rng(sched.seed)
    ckpt = load_checkpoint(model)
    tok = Tokenizer(ckpt.vocab, lowercase=ckpt.do_lower_case,
                    max_positions=ckpt.config.max_position_embeddings)
    tok.check_seq_len(sched.max_length)
    if sched.max_train is not None and sched.max_train < len(train):
        keep = np.sort(rng.choice(len(train), sched.max_train, replace=False))
        train = D.QASet(*([getattr(train, f)[i] for i in keep] for f in ("ids", "questions", "contexts",
                                                                          "answers")),
                        source=f"{train.source} ({sched.max_train} of {len(train)} questions, seed "
                               f"{sched.seed})",
                        answer_starts=None if train.answer_starts is None else
                        [train.answer_starts[i] for i in keep])
    if "qa_outputs.weight" not in ckpt.weights:
        add_head(ckpt, "qa_outputs", seed=sched.seed)

    train_f, train_cut = _encode_squad(tok, train, sched)
    dev_f, dev_cut = _encode_squad(tok, dev, sched)
    starts, ends, inside = qa_targets(train_f, train)
    for what, n, total in (("training", train_cut, len(train)), ("evaluation", dev_cut, len(dev))):
        if n:
            log(f"{n} of {total} {what} questions are longer than {sched.max_query_length} tokens "
                "and were truncated")
    outside = int((~inside).sum())
    if outside:
        log(f"{outside} of {len(inside)} training windows do not hold their whole answer: their "
            "target is [CLS]")
    if not inside.any():
        raise ValueError(f"{train.source}: no training window holds its answer")

    module = _trainable(ckpt, t, sched, dev_t)
    total = _total_steps(len(train_f.batch), sched)
    starts_t, ends_t = torch.from_numpy(starts), torch.from_numpy(ends)

    def loss_of(idx):
        ids, types, valid = _tensors(train_f.batch, idx, dev_t)
        logits = module(ids, types, valid).float()
        pad = torch.arange(logits.shape[1], device=dev_t)[None, :] >= valid[:, None]
        logits = logits.masked_fill(pad[..., None], -1e4)
        sel = torch.from_numpy(idx)
        return 0.5 * (F.cross_entropy(logits[..., 0], starts_t[sel].to(dev_t))
                      + F.cross_entropy(logits[..., 1], ends_t[sel].to(dev_t)))

    os.makedirs(output, exist_ok=True)
    started = time.perf_counter()
    with open(os.path.join(output, "finetune_log.jsonl"), "w", encoding="utf-8") as logf:
        step, seen, train_s = _train(module, sched, train_f.batch.valid_length, loss_of, dev_t, total,
                                     logf, rng, progress, f"finetune {t.name}")
        scores, predictions = evaluate_qa(module, dev_f, dev, dev_t)
        total_s = time.perf_counter() - started
        logf.write(json.dumps({"step": step, "dev_exact_match": scores["exact_match"],
                               "dev_f1": scores["f1"], "elapsed_s": total_s}) + "\n")
    with open(os.path.join(output, "predictions.json"), "w", encoding="utf-8") as f:
        json.dump(predictions, f, indent=1, ensure_ascii=False)

    _write_back(module, ckpt)
    summary = {"task": t.name, "model": model, "source": ckpt.source, "schedule": name,
               **dataclasses.asdict(sched), "train_questions": len(train),
               "train_windows": len(train_f.batch), "train_windows_without_answer": outside,
               "train_source": train.source, "truncated_train_questions": train_cut, "steps": step,
               "dev_source": dev.source, "dev_questions": len(dev), "dev_windows": len(dev_f.batch),
               "truncated_dev_questions": dev_cut, "dev_exact_match": scores["exact_match"],
               "dev_f1": scores["f1"], "n_best": N_BEST, "max_answer_length": MAX_ANSWER_LENGTH,
               **_run_facts(dev_t, train_s, total_s, output)}
    _save(ckpt, t, name, output, summary, ("task", "schedule", "dev_exact_match", "dev_f1",
                                           "train_questions", "epochs", "lr", "max_length", "doc_stride"))
    log(f"{t.name} dev exact match {scores['exact_match']:.2f}, F1 {scores['f1']:.2f} after {step} steps "
        f"({len(train)} questions, {len(train_f.batch)} windows) in {total_s / 60:.1f} min on "
        f"{summary['device_name']}; checkpoint: {output}")
    return summary


def _cpu() -> str:
    from .system import cpu_name
    return cpu_name()


def cached(model: str = "embedded", task: str = "SST", schedule: str = "cpu") -> str | None:
    """The folder of an earlier fine-tuning run with these arguments, if it finished."""
    folder = default_output(model, get_task(task).name, schedule)
    done = os.path.join(folder, "finetune.json")
    return folder if os.path.isfile(done) and os.path.isfile(os.path.join(folder, "model.safetensors")) else None
