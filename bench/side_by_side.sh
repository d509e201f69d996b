#!/usr/bin/env bash
# golf beside the record script on a lent H200 (bench/bench_record.py), in device calls of < 600 s made one
# right after the other, so the machine and the record on it stay up (the machine goes back after 30 s idle).
# What the calls carry comes from bench/device_setup.sh.
#   call 1, carry [".fa4/fa4a"]:                                  . bench/device_env.sh
#   call 2, carry [".fa4/fa4b", ".whl", ".device-data", ".record"]: bash bench/side_by_side.sh start
#   call 3, the same carry:  bash bench/side_by_side.sh golf main --no-cuda-graphs   # exit 3: the record is not
#                            through its phases yet (it needed 554-771 s to its first step): make the call again
#   call 4, the same carry:  bash bench/side_by_side.sh golf graphs                  # the h100 preset as it is
# `golf NAME [FLAG...]`: waits for the record (up to WAIT_S, default 200 s; that stops it), then runs golf alone
# with the flags (30 steps, looping from 15) and prints the table, kept as $OUT/table-NAME.json with golf's
# run as $OUT/golf-NAME.json. Every later `golf` call compares with the same record run, each from empty compile
# caches (bench/bench_record.py run_golf).
set -uo pipefail
OUT=${OUT:-/tmp/golf-out}
mkdir -p "$OUT"
. bench/device_env.sh > /tmp/side_by_side_env.txt 2>&1
grep "fa4:" /tmp/side_by_side_env.txt
state=/tmp/golf-bench-record
case ${1:-} in
start)
    python3 bench/bench_record.py --record .record/train_gpt.py --tokens .device-data/tokens --record-wall-s 40 \
        --state-dir "$state" --start-record || exit
    python3 bench/bench_record.py --state-dir "$state" --wait-record --wait-s "${WAIT_S:-530}"
    rc=$?
    cp "$state/record.log" "$OUT/" 2>/dev/null
    exit $rc ;;
golf)
    name=${2:?usage: side_by_side.sh golf NAME [FLAG...]}
    flags=("${@:3}")
    python3 bench/bench_record.py --state-dir "$state" --wait-record --wait-s "${WAIT_S:-200}"
    rc=$?
    cp "$state/record.log" "$OUT/" 2>/dev/null
    [ $rc -eq 0 ] || exit $rc
    python3 bench/bench_record.py --state-dir "$state" --tokens .device-data/tokens --golf --golf-steps 30 \
        "${flags[@]/#/--golf-flag=}" 2>&1 | tail -5
    [ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
    cp "$state/golf.json" "$OUT/golf-$name.json"
    python3 bench/bench_record.py --state-dir "$state" --collect --json "$OUT/table-$name.json" ;;
*)
    echo "usage: side_by_side.sh start | golf NAME [FLAG...]" >&2
    exit 2 ;;
esac
