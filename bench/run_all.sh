#!/usr/bin/env bash
# Every benchmark once, one after the other (each starts its own klippy
# instances; run it on an otherwise idle machine). Each one's output goes
# to OUT/<name>.txt; one line per benchmark; exit 1 when any missed a
# target or failed.
#   bench/run_all.sh [OUT]       (default: bench-out/<date>)
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
set -u
cd "$(dirname "$0")/.."
OUT="${1:-bench-out/$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
PY=.venv/bin/python
rc=0
for b in hop_latency event_latency status_latency flood_lateness \
         mesh_cost cost_scale frame_stall remote_hop; do
    start=$SECONDS
    "$PY" "bench/$b.py" >"$OUT/$b.txt" 2>&1
    code=$?
    if [ $code = 2 ] && grep -q "cannot run here" "$OUT/$b.txt"; then
        printf '%-15s skipped: %s (%d s)\n' "$b" \
            "$(grep -o 'cannot run here: .*' "$OUT/$b.txt")" \
            $((SECONDS - start))
        continue
    fi
    [ $code = 0 ] || rc=1
    printf '%-15s exit %d: %s (%d s)\n' "$b" $code \
        "$(tail -n 1 "$OUT/$b.txt")" $((SECONDS - start))
done
echo "outputs in $OUT"
exit $rc
