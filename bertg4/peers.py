"""The peers: what a user would run instead of bertg4, each as its users run it, on the same traffic.

* ``hf-longest`` -- ``transformers`` ``BertForSequenceClassification`` (classification) or
  ``BertModel`` + mean pooling (embedding), built from the same weights
  (:func:`bertg4.hf.reference_bert`), default attention (sdpa), float32; batches of the
  traffic **in the dataset's order**, each tokenized with ``padding="longest"``.
* ``ort-longest`` / ``ort-int8-longest`` -- ONNX Runtime's optimized graph and its dynamic
  INT8 (:mod:`bertg4.ort`), batches in order, each padded to its longest row.
* ``sentence-transformers`` -- ``SentenceTransformer(<embedded model folder>).encode(texts,
  batch_size=...)`` (it sorts by length itself and pads to each batch's longest row);
  embedding task and the embedded model only.

What is timed: the model calls on batches tokenized beforehand (``hf-longest``,
``ort-*``), as :func:`bertg4.traffic.measure_traffic` times bertg4's ``infer`` on a
featurized set; ``encode`` tokenizes inside, so its time includes its (fast, Rust)
tokenizer. Every peer goes through :func:`bertg4.traffic.time_passes`: warm-up passes
excluded, the median of the repeats recorded with their spread.
"""
from __future__ import annotations

import numpy as np

from .ort import ORTUnavailable
from .padding import trim
from .recipe import NotApplicable
from .traffic import Traffic, time_passes, traffic_batch, traffic_timing

PEERS = ("hf-longest", "ort-longest", "ort-int8-longest", "sentence-transformers")


def _in_order(batch, batch_size: int) -> list[np.ndarray]:
    return [np.arange(i, min(i + batch_size, len(batch))) for i in range(0, len(batch), batch_size)]


def _record_base(name: str, recipe: str, ckpt, task, device: str, timed: str) -> dict:
    return {"engine": name, "recipe": recipe, "task": task.name, "model": ckpt.config.name,
            "dtype": "float32" if "int8" not in name else "int8", "device": device, "peer": True,
            "timed": timed}


def hf_peer(ckpt, task, batch, texts, batch_size: int, device: str, seq_length: int):
    """A pass of transformers over the traffic in order, ``padding="longest"`` per batch."""
    import torch
    import transformers
    from .hf import reference_bert
    if task.kind not in ("classification", "embedding"):
        raise NotApplicable(f"peer hf-longest runs sentence classification and embeddings, not {task.kind}")
    if ckpt.source.startswith("embedded"):  # its folder holds the tokenizer a user loads
        from .checkpoint import embedded_dir
        tok = transformers.AutoTokenizer.from_pretrained(embedded_dir(), local_files_only=True)
    else:
        vocab = ckpt.vocab if isinstance(ckpt.vocab, str) else {t: i for i, t in enumerate(ckpt.vocab)}
        tok = transformers.BertTokenizerFast(vocab=vocab, do_lower_case=ckpt.do_lower_case)
    bert = reference_bert(ckpt, "sdpa")
    if task.kind == "classification":
        cfg = bert.config
        cfg.num_labels = int(ckpt.weights["classifier.weight"].shape[0])
        model = transformers.BertForSequenceClassification(cfg)
        model.bert = bert
        for name in ("weight", "bias"):
            w = np.ascontiguousarray(ckpt.weights[f"classifier.{name}"])
            getattr(model.classifier, name).data = torch.from_numpy(w)
    else:
        model = bert
    model = model.to(device).eval()
    inputs = [tok(texts[i:i + batch_size], padding="longest", truncation=True, max_length=seq_length,
                  return_tensors="pt").to(device) for i in range(0, len(texts), batch_size)]
    computed = sum(int(np.prod(x["input_ids"].shape)) for x in inputs)
    real = sum(int(x["attention_mask"].sum()) for x in inputs)
    if real != int(batch.valid_length.sum()):
        raise ValueError(f"hf-longest: the tokenizer gave {real} tokens, bertg4's "
                         f"{int(batch.valid_length.sum())}: not the same requests")

    def run():
        outs = []
        with torch.inference_mode():
            for x in inputs:
                if task.kind == "classification":
                    outs.append(model(**x).logits)
                else:
                    seq = model(**x).last_hidden_state
                    m = x["attention_mask"][..., None].to(seq.dtype)
                    outs.append(torch.nn.functional.normalize((seq * m).sum(1) / m.sum(1), dim=-1))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return torch.cat(outs).float().cpu().numpy()
    return run, computed, "model calls on batches tokenized beforehand (padding='longest', in order)"


def ort_peer(ckpt, task, batch, texts, batch_size: int, device: str, seq_length: int, recipe: str):
    """A pass of ONNX Runtime over the traffic in order, each batch padded to its longest row."""
    from .ort import build
    p = build(ckpt, task, recipe, device, seq_length=seq_length)
    staged = [p.prepare(trim(batch[idx], int(batch.valid_length[idx].max())))
              for idx in _in_order(batch, batch_size)]
    computed = sum(int(np.prod(s["input_ids"].shape)) for s in staged)

    def run():
        return np.concatenate([p.to_numpy(p.run(s)) for s in staged])
    return run, computed, "session.run on batches staged beforehand (padded to the longest row, in order)"


def st_peer(ckpt, task, batch, texts, batch_size: int, device: str, seq_length: int):
    """``SentenceTransformer(embedded folder).encode(texts, batch_size)``, offline."""
    import os
    from .checkpoint import embedded_dir
    if task.kind != "embedding":
        raise NotApplicable("peer sentence-transformers encodes sentences: embedding task only")
    if not ckpt.source.startswith("embedded"):
        raise NotApplicable("peer sentence-transformers loads the embedded model's own folder; the "
                            f"model here is {ckpt.source}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from sentence_transformers import SentenceTransformer
    transformers.logging.disable_progress_bar()  # no "Loading weights" bar inside a benchmark
    model = SentenceTransformer(embedded_dir(), device=device, local_files_only=True)
    model.max_seq_length = seq_length  # as bertg4 featurizes: truncation at seq_length
    # what encode computes: texts sorted by length in characters, longest first (its own order),
    # each batch padded to its longest row
    lengths = batch.valid_length[np.argsort([-len(t) for t in texts], kind="stable")]
    computed = sum(int(lengths[i:i + batch_size].max()) * len(lengths[i:i + batch_size])
                   for i in range(0, len(lengths), batch_size))

    def run():
        return model.encode(texts, batch_size=batch_size, show_progress_bar=False,
                            normalize_embeddings=True, convert_to_numpy=True)
    return run, computed, "encode(texts) including its tokenization (sorts by length itself)"


def measure_peer(name: str, ckpt, task, traffic: Traffic, batch, batch_size: int, device: str = "cpu",
                 seq_length: int = 128, warmup: int = 1, repeats: int = 3,
                 max_seconds: float | None = None, reference: np.ndarray | None = None) -> dict:
    """One record for peer ``name`` on ``traffic`` (``batch``: its featurized rows, used for
    token counts and, for the ORT peers, as their inputs); ``reference``: outputs to compare with."""
    from .bench import record_fields
    texts = traffic.texts
    base = _record_base(name, "int8" if "int8" in name else "fp32", ckpt, task, device, "")
    base.update(traffic=traffic.name, padding="longest (in order)" if name != "sentence-transformers"
                else "longest (sorted)", batch_size=batch_size, seq_length=batch.seq_len)
    try:
        if name == "hf-longest":
            run, computed, timed = hf_peer(ckpt, task, batch, texts, batch_size, device, seq_length)
        elif name in ("ort-longest", "ort-int8-longest"):
            run, computed, timed = ort_peer(ckpt, task, batch, texts, batch_size, device, seq_length,
                                            "int8" if "int8" in name else "baseline")
        elif name == "sentence-transformers":
            run, computed, timed = st_peer(ckpt, task, batch, texts, batch_size, device, seq_length)
        else:
            raise ValueError(f"unknown peer {name!r}: choose one of {', '.join(PEERS)}")
    except NotApplicable as e:
        return {**base, "status": "not applicable", "reason": str(e)}
    except ORTUnavailable as e:
        return {**base, "status": "not available", "reason": str(e)}
    out = run()
    base["timed"] = timed
    if reference is not None and len(out) == len(reference):
        base["max_abs_vs_bertg4_fp32"] = float(np.abs(out - reference).max())
        if task.kind == "classification":
            base["argmax_agreement_vs_bertg4_fp32"] = float((out.argmax(-1) == reference.argmax(-1)).mean())
    times = time_passes(run, max(0, warmup - 1), repeats, max_seconds)  # the call above warmed up once
    timing = traffic_timing(times, batch, batch_size, base["padding"], computed, warmup)
    return {**base, **timing, "status": "ok", **record_fields(device_name(device))}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch
        return torch.cuda.get_device_name(0)
    from .system import cpu_name
    return cpu_name()


def peers_for(task) -> list[str]:
    """The peers that run ``task``."""
    kind = task.kind
    names = ["ort-longest", "ort-int8-longest"]
    if kind in ("classification", "embedding"):
        names.insert(0, "hf-longest")
    if kind == "embedding":
        names.append("sentence-transformers")
    return names


def run_peers(model: str, task_name: str, traffic_name: str, batch_sizes, device: str = "cpu",
              seq_length: int = 128, warmup: int = 1, repeats: int = 3, max_seconds: float | None = None,
              vocab: str | None = None, names=None, max_rows: int | None = None,
              log=print) -> list[dict]:
    """Every peer of ``task`` (or ``names``) on one traffic source, one record per batch size."""
    from .api import load, with_task_head
    from .checkpoint import load_checkpoint
    from .system import KEEP_FREED_MEMORY_ENV, allocator, scoped_environ
    from .tasks import get_task
    from .traffic import load_traffic
    task = get_task(task_name)
    ckpt = load_checkpoint(model, vocab=vocab)
    # the reference predictor leaves the C allocator as the peers' users have it (glibc's
    # defaults unless they set their own): its keep_freed_memory would change it for this whole
    # process. What a CPU predictor built earlier in this process set stays (bench runs the
    # peers in a fresh process); the records' ``allocator`` says what held.
    if allocator() != "default":
        log(f"  note: this process's allocator was changed before the peers ran ({allocator()}); "
            "they run with it")
    with scoped_environ({KEEP_FREED_MEMORY_ENV: "0"}):
        p = load(task=task, engine="pt", device=device, seq_length=seq_length, checkpoint=ckpt)
    ckpt = with_task_head(ckpt, task)  # the head the predictor got: the peers compute the same function
    traffic = load_traffic(traffic_name, p.tokenizer, max_rows=max_rows)
    batch = traffic_batch(p, traffic)
    records = []
    for b in batch_sizes:
        reference = p.infer(batch, b, padding="longest")  # equal to fixed within 1e-5, faster
        for name in names or peers_for(task):
            rec = measure_peer(name, ckpt, task, traffic, batch, b, device, seq_length, warmup, repeats,
                               max_seconds, reference)
            records.append(rec)
            if rec["status"] == "ok":
                log(f"  {name:<26} {traffic_name} batch {b:>4}: {rec['sentences_per_s']:9.1f} sentences/s, "
                    f"{rec['tokens_per_s']:10.0f} tokens/s, waste {rec['padding_waste']:.2f}")
            else:
                log(f"  {name:<26} {rec['status']}: {rec['reason']}")
    return records


__all__ = ["PEERS", "peers_for", "measure_peer", "run_peers"]
