#!/usr/bin/env bash
# Run golf's GPU stages on a lent device machine (no network there): the stages named in $STAGES
# (default: train .. ttt-eval) with the preset $PRESET applied to params.yaml (flags for one stage in $ARGS_<stage>,
# e.g. ARGS_train="--max-wallclock-s 120"), on tokens built on the CPU box and
# carried in .device-data/tokens. Logs, metrics and plots come back as one tarball under $OUT, and
# the artifact (model.golf, train_gpt.py: each under 16 MiB) beside it, so a later call can carry
# it back in .device-data/compress and run ttt-eval alone (a device machine keeps nothing).
#   device run: carry [".whl", ".device-data"], command "bash bench/gpu_pipeline.sh"; with FlashAttention 4,
#   a call carrying [".fa4/fa4a"] first (bench/fetch_gpu_stack.sh), then this one with ".fa4/fa4b" added
set -uo pipefail
PRESET=${PRESET:-h100}
STAGES=${STAGES:-"train hessian-calibrate quantize prune-to-budget compress ttt-eval"}
OUT=${OUT:-/tmp/golf-out}
mkdir -p "$OUT/run"
. bench/device_env.sh > "$OUT/run/env.txt"
python3 -m stages.cli preset "$PRESET" > "$OUT/run/preset.txt" 2>&1 || { cat "$OUT/run/preset.txt"; exit 1; }
rc=0
end=$(( $(date +%s) + ${DEADLINE_S:-575} ))        # leave time to pack the results inside one call
for stage in $STAGES; do
    left=$(( end - $(date +%s) ))
    [ "$left" -gt 10 ] || { echo "$stage: skipped, out of time" | tee -a "$OUT/run/times.txt"; break; }
    t0=$(date +%s%N)
    args_var="ARGS_${stage//-/_}"                   # e.g. ARGS_train="--max-wallclock-s 120"
    timeout "$left" python3 -m stages.cli "$stage" ${!args_var:-} > "$OUT/run/$stage.log" 2>&1
    rc=$?
    t1=$(date +%s%N)
    printf '%-18s rc=%d  %d ms\n' "$stage" "$rc" $(( (t1 - t0) / 1000000 )) | tee -a "$OUT/run/times.txt"
    tail -n 25 "$OUT/run/$stage.log"
    [ "$rc" -eq 0 ] || break
done
cp -r metrics plots "$OUT/run/" 2>/dev/null
[ -f artifacts/quantize/report.json ] && cp artifacts/quantize/report.json "$OUT/run/"
[ -L artifacts/compress ] || cp artifacts/compress/model.golf artifacts/compress/train_gpt.py "$OUT/" 2>/dev/null
tar czf "$OUT/run.tgz" -C "$OUT" run && rm -rf "$OUT/run"
exit $rc
