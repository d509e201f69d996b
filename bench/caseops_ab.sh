#!/usr/bin/env bash
# CaseOps vs plain at equal steps, on the params in ./params.yaml (cpu-small by default): for each
# variant, in scratch/ab/<variant>/, `golf tokenize` with tokenize.text_transform none / caseops
# (nothing else differs), then train .. ttt-eval, then a plain eval of the artifact over the whole
# val split (the same text for both; the default ttt-eval scores only the first max_val_tokens
# tokens, which cover fewer bytes under CaseOps) and the bundled train_gpt.py (it cross-checks the
# sidecar). Metrics land in scratch/ab/<variant>/metrics/, stage times in scratch/ab/times.txt.
#   CORPUS=data/corpus bash bench/caseops_ab.sh          # VARIANTS="caseops" for one
set -euo pipefail
REPO=$PWD
CORPUS=$(realpath "${CORPUS:-data/corpus}")
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
for v in ${VARIANTS:-plain caseops}; do
    run=$REPO/scratch/ab/$v
    mkdir -p "$run/logs"
    transform=$([ "$v" = caseops ] && echo caseops || echo none)
    python3 -c "import sys, yaml; p = yaml.safe_load(open('params.yaml')); p['tokenize']['text_transform'] = sys.argv[1]; \
yaml.safe_dump(p, open(sys.argv[2], 'w'), sort_keys=False)" "$transform" "$run/params.yaml"
    cd "$run"
    for stage in tokenize train hessian-calibrate quantize prune-to-budget compress ttt-eval; do
        t0=$(date +%s)
        args=$([ "$stage" = tokenize ] && echo "--corpus $CORPUS" || true)
        python3 -m stages.cli "$stage" $args > "logs/$stage.log" 2>&1 || { tail -n 20 "logs/$stage.log"; exit 1; }
        echo "$v $stage $(( $(date +%s) - t0 )) s" | tee -a "$REPO/scratch/ab/times.txt"
    done
    python3 -m stages.cli ttt-eval --max-val-tokens 0 --ttt-mode none --no-sliding-enabled \
        --metrics metrics/full_val.json --out artifacts/full_val --plots plots/full_val.csv > logs/full_val.log 2>&1
    python3 artifacts/compress/train_gpt.py --artifact artifacts/compress/model.golf --tokens data/tokens \
        --seq-len 128 --stride 32 --max-tokens 32768 --device cpu > logs/train_gpt.log 2>&1
    tail -n 1 logs/train_gpt.log
    cd "$REPO"
done
