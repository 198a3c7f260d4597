#!/usr/bin/env bash
# Runs the demo mesh: three real klippy instances linked by [router].
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
set -eu
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
exec .venv/bin/python demo/run_demo.py "$@"
