"""Command line: ``bertg4 deploy | bench | report | cost | finetune | accuracy | profile | serve | loadtest | env``."""
from __future__ import annotations

import argparse
import json
import sys

from . import profile as _profile
from .serve import command as _serve
from .argtypes import positive_int as _positive_int, task_name as _task
from .padding import MODES as PADDING_MODES
from .recipe import RECIPES, get_recipe
from .tasks import TASKS


def _traffic(text: str) -> str:
    from .traffic import check_traffic
    try:
        return check_traffic(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _size_list(text: str) -> list[int]:
    sizes = [_positive_int(x) for x in text.split(",") if x.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected comma-separated batch sizes, got {text!r}")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertg4", description="Serve BERT fast and cheaply.")
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("deploy", help="export a model, run it on validation data, time it",
                       description="Export, reload and run a BERT model on validation data; print "
                       "latency per batch, throughput and accuracy; write a JSON record.")
    d.add_argument("--task", type=_task, default="SST",
                   help=f"one of {', '.join(TASKS)} (default SST)")
    d.add_argument("--model", default="embedded",
                   help="'embedded' (all-MiniLM-L6-v2, default), a Hugging Face folder, a GluonNLP "
                   ".params file, or random:<preset> (random:bert_12_768_12, random:bert_24_1024_16)")
    d.add_argument("--config", help="preset name or config.json (needed for some .params files)")
    d.add_argument("--vocab", help="vocab.txt or GluonNLP .vocab file (for .params models)")
    d.add_argument("--engine", default="pt", choices=["pt", "hf", "mx"],
                   help="pt (PyTorch, default), hf (transformers reference), mx (MXNet)")
    d.add_argument("--batch-size", type=_positive_int, default=128, help="default 128")
    d.add_argument("--seq-length", type=_positive_int, default=128, help="default 128")
    d.add_argument("--recipe", default="baseline", choices=list(RECIPES),
                   help="optimization rung (default baseline: fp32, naive attention)")
    d.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                   help="override the recipe's dtype")
    d.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    d.add_argument("--max-iters", type=_positive_int, default=20,
                   help="timed batches after warm-up (default 20)")
    d.add_argument("--warmup", type=int, default=3, help="untimed warm-up batches (default 3)")
    d.add_argument("--max-eval", type=_positive_int, help="evaluate at most this many examples")
    d.add_argument("--output-dir", default="output_dir", help="export and record directory")
    d.add_argument("--json", dest="json_path", help="record path (default OUTPUT_DIR/deploy_record.json)")
    d.add_argument("--only-infer", action="store_true", help="skip export; load --exported-model")
    d.add_argument("--exported-model", help="export directory to load (default OUTPUT_DIR)")
    d.add_argument("--data", help="evaluation file: GLUE-style TSV, or SQuAD JSON for --task QA")
    d.add_argument("--data-dir", help="folder holding SST-2 dev.tsv")
    d.add_argument("--download-data", action="store_true",
                   help="download GLUE SST-2 when it is not found locally (needs internet)")
    d.add_argument("--seed", type=int, default=0, help="seed for random weights and heads")
    d.add_argument("--no-progress", action="store_true")

    b = sub.add_parser("bench", help="time recipes over batch sizes; write records",
                       description="Time engines and recipes over batch sizes and write JSONL "
                       "records and a Markdown table; --suite runs the whole optimization ladder.")
    b.add_argument("--suite", choices=["gpu", "cpu"],
                   help="the ladder suite: every rung, checked against fp32 and timed, beside "
                   "transformers (gpu: BERT-base seq 128, batch 1/8/32/128; cpu: small sizes)")
    b.add_argument("--model", default="random:bert_12_768_12")
    b.add_argument("--vocab", help="vocab.txt (random models use the embedded one when present)")
    b.add_argument("--task", type=_task, action="append", help="repeatable: SST, QA, ... (default SST)")
    b.add_argument("--engine", action="append", choices=["pt", "hf", "mx", "ort"],
                   help="repeatable: pt, hf (transformers), mx (MXNet, the mxnet extra), ort (ONNX "
                   "Runtime, the ort extra); default pt")
    b.add_argument("--recipe", action="append", choices=list(RECIPES) + ["ladder"],
                   help="repeatable; 'ladder' = every rung (default baseline)")
    b.add_argument("--batch-sizes", type=_size_list,
                   help="comma-separated (default the article's 1,4,8,16,32,64,128,300)")
    b.add_argument("--seq-length", "--seq-lengths", dest="seq_lengths", type=_size_list,
                   help="comma-separated (default the article's 80,128,384)")
    b.add_argument("--device", default="cpu")
    b.add_argument("--iters", type=_positive_int, default=20, help="timed batches per point (default 20)")
    b.add_argument("--warmup", type=int, default=3,
                   help="untimed warm-up batches (default 3); with --traffic one untimed pass over "
                   "the traffic (none with --warmup 0)")
    b.add_argument("--max-seconds", type=float, default=10.0, help="time budget per point (default 10)")
    b.add_argument("--quick", action="store_true",
                   help="CI-sized: batch 1,2, seq 16, 2 timed batches (explicit sizes still win)")
    b.add_argument("--rounds", type=_positive_int, default=1,
                   help="measure every point N times, the engines taking turns in their own "
                   "processes (A B, B A, ...); side-by-side tables give the median of each "
                   "round's own speedup, which the machine's drift between runs cancels from "
                   "(default 1)")
    b.add_argument("--fresh", action="store_true",
                   help="start over instead of resuming the points already in records.jsonl")
    b.add_argument("--no-progress", action="store_true")
    b.add_argument("--traffic", action="append", type=_traffic,
                   help="repeatable: time whole passes over real request lengths instead of fixed "
                   "shapes: sst2-dev (872 sentences), squad-small (QA windows), lognormal:MEAN,P99[,N] "
                   "(synthetic token counts); batch size default 32, seq 128")
    b.add_argument("--padding", action="append", choices=list(PADDING_MODES),
                   help="repeatable, with --traffic: fixed, longest, packed (default: each engine's "
                   "default_padding)")
    b.add_argument("--peers", action="store_true",
                   help="with --traffic: also time what users run instead (transformers and ONNX "
                   "Runtime padding to the longest row per batch in order, ORT dynamic INT8, "
                   "sentence-transformers encode for --task embedding), each in its own process")
    b.add_argument("--repeats", type=_positive_int, default=3,
                   help="with --traffic: timed passes over the traffic per point (median; default 3)")
    b.add_argument("--max-rows", type=_positive_int,
                   help="with --traffic: only the first N requests of the source")
    b.add_argument("--output", default="bench_out",
                   help="folder for records.jsonl, table.md, report.md and PNGs")

    r = sub.add_parser("report", help="tables and figures from bench records",
                       description="Turn records (records.jsonl from bertg4 bench) into report.md and "
                       "PNG figures: latency and throughput against batch size per sequence length, "
                       "and each recipe's speedup per batch size.")
    r.add_argument("records", nargs="+")
    r.add_argument("--output", default="report_out")

    c = sub.add_parser("cost", help="dollars per million requests from bench/deploy records",
                       description="Price measured throughput per instance ($ per 1M requests = "
                       "price per hour / (sequences/s x 3600) x 1e6) next to the article's figures "
                       "(labelled references), and optionally the cost of meeting p99 latency "
                       "targets with dynamic batching under Poisson load.")
    c.add_argument("records", nargs="*", help="records.jsonl (bertg4 bench) or deploy JSON files")
    c.add_argument("--instance", action="append",
                   help="catalogue name, NAME=PRICE_PER_HOUR, or this-machine=PRICE (your price for "
                   "the machine that ran the records), repeatable (default: the current catalogue "
                   "entries)")
    c.add_argument("--slo-ms", help="comma-separated p99 latency targets in ms, e.g. 10,50,100")
    c.add_argument("--list", action="store_true", help="print the instance catalogue and exit")
    c.add_argument("--output", default="cost_out", help="folder for cost.md, cost.jsonl and PNGs")

    f = sub.add_parser("finetune", help="fine-tune a sentence classifier (SST-2) or a SQuAD span "
                       "predictor (QA); write a checkpoint",
                       description="Fine-tune BERT + pooler + linear head on GLUE SST-2 (the "
                       "counterpart of finetune_classifier.py), or BERT + a start/end span head on "
                       "SQuAD-format data with --task QA (the counterpart of finetune_squad.py), and "
                       "write a checkpoint folder that bertg4 deploy --model and bertg4.load read. "
                       "SST schedules: cpu (the embedded MiniLM on a 2-core CPU: one epoch over all "
                       "67,349 sentences, ~8.5 min, no dropout), full (3 epochs, dropout 0.1), tiny, probe "
                       "(SST: encoder frozen, a logistic-regression head on the pooled [CLS] output of "
                       "20,000 training sentences: what bertg4/heads/ ships). "
                       "QA schedules: cpu (seq 384, stride 128, batch 16, lr 1e-4, up to 20 epochs / "
                       "300 steps, no dropout), full (2 epochs, seq 384, stride 128, lr 3e-5, batch 32, "
                       "dropout 0.1: a GPU), tiny.")
    f.add_argument("--task", type=_task, default="SST", help="SST (default), CoLA or QA")
    f.add_argument("--model", default="embedded")
    f.add_argument("--schedule", default="cpu", choices=["cpu", "full", "tiny", "probe"])
    f.add_argument("--output", help="checkpoint folder (default: ~/.cache/bertg4/finetuned/...)")
    f.add_argument("--device", default="cpu")
    f.add_argument("--epochs", type=float)
    f.add_argument("--lr", type=float)
    f.add_argument("--batch-size", type=_positive_int)
    f.add_argument("--max-length", type=_positive_int, help="sequence length (QA: window length)")
    f.add_argument("--max-train", type=_positive_int,
                   help="a seeded random subset of the training set (sentences, or questions for QA)")
    f.add_argument("--max-steps", type=_positive_int, help="stop after this many optimizer steps")
    f.add_argument("--doc-stride", type=_positive_int, help="QA: tokens between window starts (default 128)")
    f.add_argument("--seed", type=int)
    f.add_argument("--dropout", type=float, help="hidden and attention dropout while training "
                   "(default: the schedule's; 0 turns it off)")
    f.add_argument("--train-data", help="training file: GLUE-style TSV, or SQuAD-format JSON for --task QA "
                   "(default: SST-2 train / SQuAD v1.1 train-v1.1.json found locally)")
    f.add_argument("--dev-data", help="evaluation file: GLUE-style TSV, or SQuAD-format JSON for --task QA "
                   "(default: SST-2 dev / SQuAD v1.1 dev-v1.1.json found locally)")
    f.add_argument("--data-dir", help="folder holding sst2/train.tsv and dev.tsv, or squad/train-v1.1.json "
                   "and dev-v1.1.json")
    f.add_argument("--download-data", action="store_true",
                   help="fetch GLUE SST-2 (or SQuAD v1.1 for --task QA) first (online)")
    f.add_argument("--no-progress", action="store_true")

    a = sub.add_parser("accuracy", help="accuracy and agreement with fp32 of every engine and rung",
                       description="Score a fine-tuned model with every engine and recipe that runs on "
                       "the device. SST: accuracy on SST-2 dev, agreement with the fp32 baseline's "
                       "predictions, logit differences. QA: SQuAD exact match and F1, the share of "
                       "answers equal to the fp32 baseline's and the F1 difference from it. "
                       "Not-applicable pairs and engines that cannot load are listed as such.")
    a.add_argument("--model", required=True, help="a fine-tuned checkpoint (bertg4 finetune's output)")
    a.add_argument("--task", type=_task, default="SST", help="SST (default), another GLUE task, or QA")
    a.add_argument("--device", default="cpu")
    a.add_argument("--engine", action="append", choices=["pt", "hf", "mx", "ort"],
                   help="repeatable (default pt and hf, and mx when MXNet is installed); ort: ONNX "
                   "Runtime's optimized graph and its dynamic INT8 (the ort extra)")
    a.add_argument("--recipe", action="append", choices=list(RECIPES), help="repeatable (default all)")
    a.add_argument("--seq-length", type=_positive_int, help="default 128 (QA: 384)")
    a.add_argument("--batch-size", type=_positive_int, default=64, help="default 64")
    a.add_argument("--data", help="a GLUE-style TSV with labels (default: SST-2 dev), or a SQuAD-format "
                   "JSON for --task QA (default: SQuAD v1.1 dev-v1.1.json found locally)")
    a.add_argument("--data-dir")
    a.add_argument("--download-data", action="store_true",
                   help="fetch the evaluation set (SST-2, or SQuAD v1.1 dev for --task QA) when not found")
    a.add_argument("--output", default="accuracy_out", help="folder for records.jsonl and table.md")

    _profile.add_parser(sub)
    _serve.add_parser(sub)
    sub.add_parser("env", help="print versions and devices as JSON")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "env":
        from .system import versions
        import torch
        info = versions()
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        print(json.dumps(info, indent=2))
        return 0
    if args.command in _HANDLERS:
        from .checkpoint import CheckpointError
        try:
            return _HANDLERS[args.command](args)
        except (CheckpointError, ValueError, KeyError, FileNotFoundError, RuntimeError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            print(f"bertg4 {args.command}: error: {message}", file=sys.stderr)
            return 2
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .deploy import deploy
    from .text import TextError
    if args.download_data and args.data is None:
        from . import data as D
        if D.find_sst2("dev", args.data_dir) is None:
            args.data_dir = D.download_sst2()
    try:
        deploy(task=args.task, model=args.model, engine=args.engine, batch_size=args.batch_size,
               seq_length=args.seq_length, dtype=args.dtype, device=args.device, recipe=args.recipe,
               max_iters=args.max_iters, warmup=args.warmup, output_dir=args.output_dir,
               only_infer=args.only_infer, exported_model=args.exported_model, data=args.data,
               data_dir=args.data_dir, config=args.config, vocab=args.vocab,
               max_eval=args.max_eval, seed=args.seed, json_path=args.json_path,
               progress=not args.no_progress)
    except (CheckpointError, ConfigError, TextError, ValueError, FileNotFoundError,
            RuntimeError, NotImplementedError) as e:
        print(f"bertg4 deploy: error: {e}", file=sys.stderr)
        return 2
    return 0


def _finetune(args) -> int:
    from . import data as D
    from .finetune import finetune
    from .tasks import get_task
    qa = get_task(args.task).kind == "qa"
    if args.download_data:
        if qa:
            for split, given in (("train", args.train_data), ("dev", args.dev_data)):
                if given is None and D.find_squad(split, args.data_dir) is None:
                    D.download_squad(split)
        else:
            args.data_dir = D.download_sst2()
    finetune(args.model, args.task, args.schedule, output=args.output, device=args.device,
             data_dir=args.data_dir, train=args.train_data, dev=args.dev_data,
             progress=not args.no_progress, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
             max_length=args.max_length, max_train=args.max_train, max_steps=args.max_steps,
             doc_stride=args.doc_stride, seed=args.seed, dropout=args.dropout)
    return 0


def _accuracy(args) -> int:
    import os
    from . import data as D
    from .accuracy import format_accuracy, rung_accuracy
    from .bench import write_jsonl
    from .tasks import get_task
    if get_task(args.task).kind == "qa":
        data = D.read_squad(args.data) if args.data else D.load_squad("dev", args.data_dir,
                                                                     download=args.download_data)
    else:
        data = D.read_tsv(args.data) if args.data else D.load_sst2("dev", args.data_dir,
                                                                   download=args.download_data)
    from .mx import available
    engines = args.engine or (["pt", "hf"] + (["mx"] if available() else []))
    rows = rung_accuracy(args.model, args.task, args.device, engines,
                         args.recipe, data, args.seq_length, args.batch_size)
    os.makedirs(args.output, exist_ok=True)
    write_jsonl(rows, os.path.join(args.output, "records.jsonl"))
    table = format_accuracy(rows)
    with open(os.path.join(args.output, "table.md"), "w", encoding="utf-8") as fh:
        fh.write(table + "\n")
    print(table)
    return 0


def _report(args) -> int:
    from .bench import read_records
    from .sweep import format_report, write_report
    records = [r for path in args.records for r in read_records(path)]
    paths = write_report(records, args.output)
    print(format_report(records))
    print("written: " + ", ".join(paths))
    return 0


def _bench(args) -> int:
    import os
    from .bench import write_jsonl
    os.makedirs(args.output, exist_ok=True)
    if args.rounds > 1 and (args.traffic or args.suite):
        raise ValueError("--rounds repeats the fixed-shape sweep; --traffic (--repeats) and --suite "
                         "time their own repeats")
    if args.traffic:
        return _bench_traffic(args)
    if args.padding or args.peers:
        raise ValueError("--padding and --peers apply to real traffic: add --traffic "
                         "(sst2-dev, squad-small or lognormal:MEAN,P99[,N])")
    if args.suite:
        from .suite import format_suite, run_suite
        records = run_suite(args.suite, vocab=args.vocab)
        table = format_suite(records)
    else:
        from .recipe import ladder
        from .sweep import ARTICLE_BATCH_SIZES, ARTICLE_SEQ_LENGTHS, QUICK, plan, read_sweep, run_sweep, \
            write_report
        q = QUICK if args.quick else {}
        names = args.recipe or ["baseline"]
        recipes = list(dict.fromkeys(r.name for n in names for r in (ladder() if n == "ladder" else [get_recipe(n)])))
        points = plan(args.engine or ["pt"], recipes, args.task or ["SST"],
                      args.seq_lengths or q.get("seq_lengths", ARTICLE_SEQ_LENGTHS),
                      args.batch_sizes or q.get("batch_sizes", ARTICLE_BATCH_SIZES), rounds=args.rounds)
        path = os.path.join(args.output, "records.jsonl")
        run_sweep(points, path, model=args.model, device=args.device,
                  warmup=q.get("warmup", args.warmup), iters=q.get("iters", args.iters),
                  max_seconds=q.get("max_seconds", args.max_seconds), resume=not args.fresh,
                  progress=not args.no_progress, vocab=args.vocab)
        records = [r for r in read_sweep(path) if r.get("sweep_model") == args.model
                   and r.get("device") == args.device]
        for r in records:
            if r["status"] != "ok":
                print(f"{r['engine']} {r['recipe']} {r['task']} seq {r['seq_length']} batch "
                      f"{r['batch_size']}: {r['status']}: {r['reason']}")
        paths = write_report(records, args.output)
        with open(os.path.join(args.output, "table.md"), "w", encoding="utf-8") as f:
            from .sweep import format_report
            f.write(format_report(records) + "\n")
        print(format_report(records))
        print(f"records: {path}; report: {', '.join(paths)}")
        return 0
    write_jsonl(records, os.path.join(args.output, "records.jsonl"))
    with open(os.path.join(args.output, "table.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    print(table)
    print(f"records: {os.path.join(args.output, 'records.jsonl')}")
    return 0


def _bench_traffic(args) -> int:
    """``bertg4 bench --traffic ...``: whole passes over real request lengths, per engine, recipe,
    task, padding mode and batch size (and the peers with ``--peers``), appended to
    ``OUTPUT/records.jsonl`` beside any fixed-shape records; the side-by-side table goes to
    ``OUTPUT/traffic.md``."""
    import os
    from .recipe import ladder
    from .traffic import format_traffic, run_traffic
    if args.suite:
        raise ValueError("--suite runs the fixed-shape ladder; it does not combine with --traffic")
    names = args.recipe or ["baseline"]
    recipes = list(dict.fromkeys(r.name for n in names for r in (ladder() if n == "ladder" else [get_recipe(n)])))
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "records.jsonl")
    if args.fresh and os.path.exists(path):
        os.remove(path)
    records = []
    for seq in args.seq_lengths or [128]:
        records += run_traffic(args.engine or ["pt"], recipes, args.task or ["SST"], args.traffic,
                               args.padding, args.batch_sizes or [32], model=args.model,
                               device=args.device, seq_length=seq, warmup=min(args.warmup, 1),
                               repeats=args.repeats, max_seconds=None, vocab=args.vocab,
                               peers=args.peers, max_rows=args.max_rows)
    with open(path, "a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, default=str) + "\n")
    table = format_traffic(records)
    with open(os.path.join(args.output, "traffic.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    print(table)
    print(f"records: {path}; table: {os.path.join(args.output, 'traffic.md')}")
    return 0


def _cost(args) -> int:
    import os
    from . import cost as K
    from .bench import read_records, write_jsonl
    if args.list:
        for inst in K.CATALOGUE.values():
            print(f"{inst.name:<18} ${inst.price_per_hour:<7g} {inst.gpu or 'CPU':<12} {inst.region} "
                  f"({inst.date}) {inst.source}")
        return 0
    if not args.records:
        raise ValueError("give one or more records files (records.jsonl from bertg4 bench, or "
                         "deploy JSON records), or --list")
    # timing records only (the ladder suite also writes numerics rows: kind "numerics")
    records = [r for path in args.records for r in read_records(path) if r.get("kind", "timing") == "timing"]
    names = args.instance or [n for n in K.CATALOGUE if "@" not in n]
    instances = [K.parse_instance(n) for n in names]
    rows = K.cost_table(records, instances)
    if not rows:
        raise ValueError("no successful timing records in " + ", ".join(args.records))
    os.makedirs(args.output, exist_ok=True)
    import matplotlib
    matplotlib.use("Agg")
    from . import plots
    table = K.cost_markdown(rows)
    plots.cost_per_million_bars(rows + list(K.ARTICLE_REFERENCE)).savefig(
        os.path.join(args.output, "cost.png"), dpi=120, bbox_inches="tight")
    out_rows = list(rows)
    if args.slo_ms:
        targets = [float(x) / 1e3 for x in args.slo_ms.split(",") if x.strip()]
        slo_rows = []
        keys = ("engine", "recipe", "seq_length", "dtype", "device_name")
        # service curves come from fixed-shape records (latency per batch at each batch size);
        # real-traffic records are priced above, side by side with them
        ok = [r for r in records if r.get("status", "ok") == "ok" and not r.get("traffic")]
        for group in dict.fromkeys(tuple(r.get(k) for k in keys) for r in ok):
            grp = [r for r in ok if tuple(r.get(k) for k in keys) == group]
            curve = K.service_curve(grp)
            for inst in instances:
                for row in K.slo_cost(curve, inst, targets, measured_on=grp[0]):
                    slo_rows.append({"kind": "slo", **dict(zip(keys, group)), **row})
        table += "\n\n| instance | engine / recipe | seq | p99 target ms | best max batch | max wait ms | " \
                 "requests/s | $ per 1M | $ per 1M without target |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
        table += "\n".join(
            f"| {r['instance']} | {r['engine']} / {r['recipe']} | {r['seq_length']} | "
            f"{1e3 * r['p99_target_s']:g} | {r['max_batch']} | {1e3 * r['max_wait_s']:.1f} | "
            f"{r['max_rate_per_s']:.1f} | "
            f"{'not met' if r['dollars_per_million'] is None else format(r['dollars_per_million'], '.3f')} | "
            f"{r['dollars_per_million_no_slo']:.3f} |" for r in slo_rows)
        several = len({(r["engine"], r["recipe"], r["seq_length"], r["dtype"], r["device_name"])
                       for r in slo_rows}) > 1
        lines = [{**r, "instance": f"{r['instance']} | {r['engine']} {r['recipe']} seq {r['seq_length']}"}
                 for r in slo_rows] if several else slo_rows
        plots.cost_vs_latency_target(lines).savefig(os.path.join(args.output, "slo.png"), dpi=120,
                                                       bbox_inches="tight")
        out_rows += slo_rows
    write_jsonl(out_rows, os.path.join(args.output, "cost.jsonl"))
    with open(os.path.join(args.output, "cost.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    print(table)
    print(f"written to {args.output}/: cost.md, cost.jsonl, cost.png" + (", slo.png" if args.slo_ms else ""))
    return 0


_HANDLERS = {"bench": _bench, "report": _report, "cost": _cost, "finetune": _finetune,
             "accuracy": _accuracy, "profile": _profile.run, "serve": _serve.run,
             "loadtest": _serve.run}


if __name__ == "__main__":
    sys.exit(main())
