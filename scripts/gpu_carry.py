"""What scripts/gpu_suite.sh needs on a GPU machine that has no bertg4 install and no internet.

    python scripts/gpu_carry.py [DIR]        (DIR: .gpu, which git ignores)

writes DIR/minilm, the embedded all-MiniLM-L6-v2 checkpoint with its weights stored in float16
(44 MiB instead of 87; read back into float32, and the shipped SST-2 head still applies:
bertg4.checkpoint.float16_copy), and DIR/data/sst2/dev.tsv, the SST-2 dev file. Then, on the
GPU machine, with DIR carried beside the working tree:

    scripts/gpu_suite.sh OUT DIR/minilm DIR/data
"""
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bertg4 import checkpoint as C  # noqa: E402
from bertg4 import data as D  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = os.path.abspath(argv[0] if argv else os.path.join(ROOT, ".gpu"))
    weights = C.float16_copy(C.embedded_dir(), os.path.join(out, "minilm"))
    os.makedirs(os.path.join(out, "data", "sst2"), exist_ok=True)
    dev = os.path.join(out, "data", "sst2", "dev.tsv")
    shutil.copyfile(D.SST2_DEV, dev)
    if D.sha256(dev) != D.SST2_SHA256["dev.tsv"]:
        raise SystemExit(f"{D.SST2_DEV}: not the SST-2 dev file its checksum names")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"{weights}: {os.path.getsize(weights) / 2**20:.1f} MiB; {dev}; "
          f"{out}: {total / 2**20:.1f} MiB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
