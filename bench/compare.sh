#!/usr/bin/env bash
# Benchmarks of two commits side by side in one run: each benchmark runs on
# the old commit, then on this tree, then again on each (old, new, old,
# new), so that a machine that gets busier or quieter during the run
# touches both alike. Prints each run's last line (its figures); the
# outputs are in OUT/<old|new>-<n>-<name>.txt. Run it on an idle machine.
#   bench/compare.sh <old rev> [benchmark ...]
#   (default benchmarks: hop_latency event_latency status_latency)
#
# The old commit is checked out in a temporary worktree with a copy of
# this tree's .venv (each tree installs its module there, as the tests do).
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
set -u
cd "$(dirname "$0")/.."
OLD_REV="${1:?usage: bench/compare.sh <old rev> [benchmark ...]}"
shift
BENCHES="${*:-hop_latency event_latency status_latency}"
NEW="$PWD"
OUT="$NEW/bench-out/compare-$(date -u +%Y%m%d-%H%M%S)"
OLD="$(mktemp -d /tmp/bench-old-XXXXXX)"
mkdir -p "$OUT"
cleanup() {
    git -C "$NEW" worktree remove --force "$OLD" >/dev/null 2>&1
    rm -rf "$OLD"
}
trap cleanup EXIT
scripts/setup-venv.sh >/dev/null
git worktree add --detach "$OLD" "$OLD_REV" >/dev/null 2>&1 || {
    echo "cannot check out $OLD_REV" >&2; exit 2; }
cp -a .venv "$OLD/.venv"
# Each tree links its own module into its venv's klippy
find "$OLD/.venv" -path '*/klippy/extras/router' -type l -delete
echo "old: $(git -C "$OLD" log -1 --format='%h %s' | cut -c1-70)"
echo "new: $(git log -1 --format='%h %s' | cut -c1-70)$(
    git diff --quiet HEAD -- klippy_extras || echo ' (+ uncommitted)')"
rc=0
for b in $BENCHES; do
    for round in 1 2; do
        for side in old new; do
            tree="$OLD"; [ "$side" = new ] && tree="$NEW"
            file="$OUT/$side-$round-$b.txt"
            (cd "$tree" && .venv/bin/python "bench/$b.py") >"$file" 2>&1
            code=$?
            [ $code = 0 ] || rc=1
            printf '%-15s %s %d exit %d: %s\n' "$b" "$side" "$round" $code \
                "$(tail -n 1 "$file")"
        done
    done
done
echo "outputs in $OUT"
exit $rc
