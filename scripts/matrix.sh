#!/usr/bin/env bash
# The support matrix: the core, trust and remote-link tests (the websocket
# and TLS parts, and one far host through Moonraker) on every Python 3.8
# to 3.13
# found (python3.X on PATH and pyenv's versions), each in a venv of its own
# under .venv-matrix/ made by scripts/setup-venv.sh; one line per Python
# and flavor. Logs: .venv-matrix/<row>.log
#   scripts/matrix.sh [pytest arguments]
# MATRIX_ENDS=1 keeps the oldest and the newest Python only; MATRIX_TESTS
# names other test files (CI: the core tests on both ends).
# Klipper checkouts add rows, each "<checkout>:<its venv python>", several
# separated by spaces:
#   MATRIX_MAINLINE=~/klipper:~/klippy-env/bin/python
#   MATRIX_KALICO=~/kalico:~/kalico-env/bin/python
#   MATRIX_U1=~/u1-klipper:~/u1-env/bin/python   (Snapmaker's U1 fork)
# (the tests link the module into each checkout, as install.sh does)
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
set -eu
cd "$(dirname "$0")/.."
TESTS="${MATRIX_TESTS:-tests/test_core.py tests/test_trust.py
    tests/test_remote_units.py tests/test_remote.py::test_remote_afc_example}"
OUT=.venv-matrix
mkdir -p "$OUT"

py_version() {
    "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' \
        2>/dev/null
}

# "<version> <interpreter>", one per distinct version (pyenv shims of
# versions it has not selected fail to run: left out)
found_pythons() {
    for py in python3.8 python3.9 python3.10 python3.11 python3.12 \
              python3.13 "$HOME"/.pyenv/versions/*/bin/python; do
        command -v "$py" >/dev/null 2>&1 || continue
        "$py" -c 'import sys
if (3, 8) <= sys.version_info[:2] <= (3, 13):
    print("%d.%d.%d %s" % (sys.version_info[:3] + (sys.executable,)))' \
            2>/dev/null || true
    done | sort -V -u -k1,1
}

# Runs pytest with $1 (a python with pytest), log in $2, the environment
# already set; prints "N passed, M failed (T s)" from its summary, and
# fails when pytest did
run_tests() {
    local py="$1" log="$2" start=$SECONDS rc=0 summary
    shift 2
    "$py" -m pytest -q -p no:cacheprovider $TESTS "$@" >"$log" 2>&1 || rc=$?
    summary="$(tail -n 1 "$log")"
    count() {
        echo "$summary" | grep -Eo "[0-9]+ $1" | cut -d' ' -f1
    }
    local passed failed errors skipped
    passed="$(count passed)"; failed="$(count failed)"
    errors="$(count error)"; skipped="$(count skipped)"
    printf '%s passed, %s failed%s (%d s)\n' "${passed:-0}" \
        "$(( ${failed:-0} + ${errors:-0} ))" \
        "${skipped:+, $skipped skipped}" "$(( SECONDS - start ))"
    return $rc
}

STATUS=0
mapfile -t ROWS < <(found_pythons)
[ "${#ROWS[@]}" -gt 0 ] || { echo "No Python 3.8 to 3.13 found" >&2; exit 1; }
if [ "${MATRIX_ENDS:-0}" = "1" ] && [ "${#ROWS[@]}" -gt 2 ]; then
    ROWS=("${ROWS[0]}" "${ROWS[${#ROWS[@]}-1]}")
fi
LAST=""
for row in "${ROWS[@]}"; do
    version="${row%% *}"; py="${row#* }"
    venv="$OUT/$version"
    if ! PYTHON="$py" scripts/setup-venv.sh -k "$venv" \
            >"$OUT/$version-setup.log" 2>&1; then
        printf 'python %-8s pypi-klippy  set-up failed (%s)\n' "$version" \
            "$OUT/$version-setup.log"
        STATUS=1
        continue
    fi
    LAST="$venv/bin/python"
    line="$(run_tests "$LAST" "$OUT/$version.log" "$@")" || STATUS=1
    printf 'python %-8s pypi-klippy  %s\n' "$version" "$line"
done

# Checkout rows run the tests from the last matrix venv (it has pytest);
# klippy runs with the checkout's own python
for flavor in mainline kalico u1; do
    var="MATRIX_$(echo "$flavor" | tr a-z A-Z)"
    for entry in ${!var:-}; do
        dir="${entry%%:*}"; kpy="${entry#*:}"
        version="$(py_version "$kpy")" || version="?"
        if [ -z "$LAST" ]; then
            echo "python $version $flavor  no matrix venv to run pytest" >&2
            STATUS=1; continue
        fi
        line="$(KLIPPER_PATH="$dir" KLIPPY_PYTHON="$kpy" run_tests \
                "$LAST" "$OUT/$flavor-$version.log" "$@")" || STATUS=1
        printf 'python %-8s %-12s %s\n' "$version" "$flavor" "$line"
    done
done
exit $STATUS
