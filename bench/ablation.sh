#!/usr/bin/env bash
# A small ablation over keys that do not retrain, in a throwaway clone, as one table + a scatter plot.
#
#   bash bench/ablation.sh                 # clone HEAD of this repo into /tmp/ablation, write /tmp/ablation_out/
#   REV=<commit> CLONE=/tmp/abl2 OUT=/tmp/abl2_out bash bench/ablation.sh
#   EXPS="cat10:train.cat_every=10 ..." bash bench/ablation.sh   # other experiments (name:key=value[,key=value])
#   SEEDS=1,2,3 bash bench/ablation.sh     # every experiment and the baseline at these train.seeds too
#
# Each experiment is one `dvc exp run --queue -S ...` against the clone's commit; the commit row is
# the baseline (prune_to_budget.method=selective, quantize.codebook_k=0, quantize.hadamard=false at
# the defaults). The clone shares this repo's DVC cache, so the stages before the first changed
# one (corpus .. hessian_calibrate, ~10 min of CPU) are restored from cache, never rerun: run it
# after a `dvc repro` whose dvc.lock is committed. A key of `train` (CAT, MoE, MTP) retrains: about
# 10 minutes per experiment on a 2-core CPU at cpu-small. PYTHONPATH points at the clone, so the
# clone's code runs, not the editable install's working tree. Nothing in this repo is modified
# except new files in the shared cache. With SEEDS every experiment retrains once per seed, the
# baseline is queued at those seeds too (its commit row adds its own seed), and the report tests each
# row against the baseline's (golf report --baseline: mean ± std, Welch p, the leaderboard rule).
set -euo pipefail
SRC=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
REV=${REV:-HEAD}
CLONE=${CLONE:-/tmp/ablation}
OUT=${OUT:-/tmp/ablation_out}
EXPS=${EXPS:-"two_four:prune_to_budget.method=two_four codebook64:quantize.codebook_k=64 hadamard:quantize.hadamard=true"}
SEEDS=${SEEDS:-}
POLL_S=${POLL_S:-10}

if [ -e "$CLONE" ]; then
    [ -d "$CLONE/.dvc" ] || { echo "ablation: $CLONE exists and is not a clone; set CLONE=" >&2; exit 1; }
    rm -rf "$CLONE"                                   # a previous throwaway clone
fi
git clone -q "$SRC" "$CLONE"
cd "$CLONE"
git checkout -q "$REV"
git config user.name >/dev/null || git config user.name ablation   # dvc exp commits in the clone only
git config user.email >/dev/null || git config user.email ablation@localhost
export PYTHONPATH=$CLONE${PYTHONPATH:+:$PYTHONPATH} DVC_NO_ANALYTICS=1
dvc cache dir --local "$SRC/.dvc/cache"
dvc checkout -q || true                               # data/ and artifacts/ from the shared cache
echo "ablation: $(git log -1 --format='%h %s') in $CLONE; stale stages (rerun by every experiment):"
dvc status -q && echo "  none" || dvc status | sed 's/^/  /'

seed_sets=()
if [ -n "$SEEDS" ]; then
    seed_sets=(-S "train.seed=$SEEDS")                # a sweep: one experiment per seed, named <name>-<i>
    dvc exp run --queue -n baseline "${seed_sets[@]}"
fi
for spec in $EXPS; do
    name=${spec%%:*}
    sets=()
    IFS=, read -ra kvs <<< "${spec#*:}"
    for kv in "${kvs[@]}"; do sets+=(-S "$kv"); done
    dvc exp run --queue -n "$name" "${sets[@]}" "${seed_sets[@]}"
done
dvc queue start -j 1
# capture first: `dvc queue status | grep -q` would end the loop on dvc's SIGPIPE under pipefail
busy() { local s; s=$(dvc queue status 2>/dev/null) || return 0; grep -cE 'Queued|Running' <<< "$s"; }
t0=$(date +%s)
while n=$(busy); [ "$n" -gt 0 ]; do
    printf 'ablation: %4ds, %s queued or running\n' $(( $(date +%s) - t0 )) "$n"
    sleep "$POLL_S"
done
status=$(dvc queue status 2>/dev/null || true)
echo "$status"
dvc queue stop -q || true                             # the idle worker would linger
for name in $(awk '$NF == "Failed" {print $2}' <<< "$status"); do   # a failed experiment: show why
    echo "ablation: $name failed; dvc queue logs $name:" >&2
    dvc queue logs "$name" | tail -n 30 >&2 || true
done

mkdir -p "$OUT"
base_args=()
if [ -n "$SEEDS" ]; then base_args=(--baseline "$(git rev-parse HEAD)"); fi   # the commit row + its seed runs
golf report --csv "$OUT/ablation.csv" --png "$OUT/ablation.png" "${base_args[@]}" | tee "$OUT/ablation.md"
echo "ablation: table $OUT/ablation.md, CSV $OUT/ablation.csv, plot $OUT/ablation.png"
