"""Fit the SST-2 linear probe shipped in bertg4/heads/ (the `probe` schedule of bertg4.finetune:
20,000 SST-2 train sentences, L2 chosen on a held-out tenth of them, dev scored once).

    python results/2026-11-29_cpu_probe/train_probe.py OUTPUT_FOLDER

The same run as ``bertg4 finetune --task SST --schedule probe --output OUTPUT_FOLDER``.
OUTPUT_FOLDER/head.safetensors and head.json are the files copied to
bertg4/heads/embedded-SST-probe.{safetensors,json}.
"""
import sys

from bertg4.finetune import finetune

if __name__ == "__main__":
    out = sys.argv[1]
    sys.argv = ["python", "results/2026-11-29_cpu_probe/train_probe.py", out]
    finetune("embedded", "SST", "probe", output=out, progress=False)
