#!/usr/bin/env bash
# Sets up what the tests need, then runs them against real klippy processes.
#   scripts/test.sh              the whole suite
#   scripts/test.sh -k restart   pytest arguments pass through
# KLIPPER_PATH=<checkout> KLIPPY_PYTHON=<its venv python> test another flavor.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
set -eu
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
exec .venv/bin/python -m pytest tests "$@"
