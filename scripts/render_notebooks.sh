#!/usr/bin/env bash
# Execute every notebook at the smoke sizes and render it to HTML.
#
#   scripts/render_notebooks.sh OUT_DIR [NOTEBOOK ...]
#
# Runs `jupyter nbconvert --to html --execute` on every notebooks/NN*.ipynb (01_deploy …
# 05b_the_ladder … 07_serving: whatever is there, in name order; or only the NOTEBOOKs named,
# e.g. notebooks/06_cost_per_million.ipynb) with BERTG4_SMOKE=1,
# in a temporary copy of notebooks/ (so the files the notebooks write, such as output_dir/,
# stay out of the repository). Writes to OUT_DIR: one NN_topic.html per notebook (widget
# state included), figures/NN_topic_K.png (every PNG figure of that page, in order, the
# figures drawn under sliders included) and render.log. Exits non-zero when a notebook fails.
# PYTHON selects the interpreter (default: python3 on PATH, e.g. the activated .venv).
set -euo pipefail
out=${1:?usage: scripts/render_notebooks.sh OUT_DIR [NOTEBOOK ...]}
shift
mkdir -p "$out/figures"
out=$(realpath "$out")
chosen=()
for nb in "$@"; do
    [ -f "$nb" ] || { echo "no such notebook: $nb" >&2; exit 2; }
    chosen+=("$(realpath "$nb")")
done
cd "$(dirname "$0")/.."
repo=$PWD
py=${PYTHON:-python3}
export BERTG4_SMOKE=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shopt -s nullglob
notebooks=(notebooks/[0-9][0-9]*.ipynb)
if [ ${#chosen[@]} -gt 0 ]; then
    notebooks=("${chosen[@]}")
fi
if [ ${#notebooks[@]} = 0 ]; then
    echo "no notebooks/NN*.ipynb to render" >&2
    exit 1
fi
cp "${notebooks[@]}" "$work/"

status=0
: > "$out/render.log"
# A smoke-sized cell takes seconds; CELL_TIMEOUT bounds one that never gets its reply (nbclient
# can wait forever on a cell that drives a widget, jupyter/nbclient#312), and the notebook is
# run again, up to ATTEMPTS times, saying so in the log.
cell_timeout=${CELL_TIMEOUT:-300}
attempts=${ATTEMPTS:-3}
for nb in "$work"/[0-9][0-9]*.ipynb; do
    name=$(basename "$nb" .ipynb)
    done_ok=0
    for attempt in $(seq 1 "$attempts"); do
        start=$(date +%s)
        if "$py" -m jupyter nbconvert --to html --execute --ExecutePreprocessor.timeout="$cell_timeout" \
                --output-dir "$out" "$nb" >> "$out/render.log" 2>&1; then
            echo "$name: ok in $(( $(date +%s) - start )) s (attempt $attempt)" | tee -a "$out/render.log"
            done_ok=1
            break
        fi
        echo "$name: attempt $attempt FAILED after $(( $(date +%s) - start )) s (see $out/render.log)" \
            | tee -a "$out/render.log"
    done
    if [ "$done_ok" = 0 ]; then
        status=1
    fi
done

# Every figure (cell outputs, and the outputs held in widget state), one PNG file each.
"$py" - "$out" <<'EOF'
import base64, html, json, pathlib, re, sys
out = pathlib.Path(sys.argv[1])


def walk(node):
    if isinstance(node, dict):
        if isinstance(node.get("image/png"), str):
            yield node["image/png"]
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


for page in sorted(out.glob("[0-9][0-9]*.html")):
    text = page.read_text(encoding="utf-8")
    found = re.findall(r'<img[^>]*src="data:image/png;base64,([^"]+)"', text)
    for state in re.findall(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>',
                            text, re.S):
        found += list(walk(json.loads(html.unescape(state))))
    seen, k = set(), 0
    for data in found:
        data = data.replace("\n", "").strip()
        if data not in seen:
            seen.add(data)
            k += 1
            (out / "figures" / f"{page.stem}_{k}.png").write_bytes(base64.b64decode(data))
    print(f"{page.stem}: {k} figure(s)")
EOF
exit $status
