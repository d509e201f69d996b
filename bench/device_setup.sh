#!/usr/bin/env bash
# On the CPU box (with network), from the repo root: everything the GPU benches' device calls carry, in git-ignored
# folders, rebuilt from nothing (a new checkout has none of them):
#   .device-data/tokens   the h100 preset's sp8192 tokens of the news corpus (5,571 train documents; device_env.sh
#                         links them to data/tokens)
#   .fa4/fa4a, .fa4/fa4b  FlashAttention 4 and the CUTLASS DSL, one device call each (bench/fetch_gpu_stack.sh)
#   .whl                  brotli and zstandard for the device's CPython 3.12 (its image lacks them)
#   .record/train_gpt.py  the 1.0611 record script (bench/bench_record.py), from openai/parameter-golf: a clone's
#                         git dir in PG_REPO, else a shallow clone from GitHub
#   bash bench/device_setup.sh                  # after `make setup` (golf from .venv)
#   PG_REPO=/path/to/parameter-golf.git bash bench/device_setup.sh
# Each part is skipped when it is already there; delete it to rebuild it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
golf=${GOLF:-$root/.venv/bin/golf}
[ -x "$golf" ] || { echo "device_setup: $golf not found (run make setup first, or set GOLF)" >&2; exit 2; }
RECORD=records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611/train_gpt.py

if [ ! -f .device-data/tokens/manifest.json ]; then
    work=$(mktemp -d)
    (cd "$work" && "$golf" preset h100 --presets "$root/presets" --params "$root/params.yaml" --out h100.yaml \
        && "$golf" corpus --params h100.yaml --source news --requirements "$root/corpus-requirements.txt" \
            --cache "$root/.cache/golf" \
        && "$golf" tokenize --params h100.yaml) > "$work.log" 2>&1 \
        || { tail -5 "$work.log" >&2; echo "device_setup: the tokens failed (log $work.log)" >&2; exit 1; }
    mkdir -p .device-data && rm -rf .device-data/tokens && mv "$work/data/tokens" .device-data/tokens
    rm -rf "$work" "$work.log"
fi
[ -f .fa4/fa4a/cu13.tar.xz ] || bash bench/fetch_gpu_stack.sh .fa4
if ! ls .whl/brotli-*.whl .whl/zstandard-*.whl > /dev/null 2>&1; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl brotli zstandard
fi
if [ ! -f .record/train_gpt.py ]; then
    repo=${PG_REPO:-}
    if [ -z "$repo" ]; then
        repo=$(mktemp -d)
        trap 'rm -rf "$repo"' EXIT
        git clone -q --depth 1 https://github.com/openai/parameter-golf "$repo"
    fi
    mkdir -p .record
    # a bare git dir or a work tree; the script lands whole or not at all
    git -C "$repo" show "HEAD:$RECORD" > .record/train_gpt.py.part 2> /dev/null || {
        rm -f .record/train_gpt.py.part
        echo "device_setup: PG_REPO=$repo: no $RECORD at its HEAD (a clone of openai/parameter-golf?)" >&2
        exit 1; }
    mv .record/train_gpt.py.part .record/train_gpt.py
fi
python3 - <<'PY'
import json
m = json.load(open(".device-data/tokens/manifest.json"))["splits"]
print(f"tokens: {m['train']['docs']:,} train documents, {m['train']['tokens']:,} train / {m['val']['tokens']:,} val tokens")
PY
du -sh .device-data/tokens .fa4/fa4a .fa4/fa4b .whl .record
