# Test-only klippy extras module: REAL_DWELL SECONDS=<s> holds the G-code
# queue for that long in real time (G4 does not wait in klippy's
# file-output mode, which the tests run), yielding to the reactor like
# any waiting command. Installed by the test harness.
#
#   [real_dwell]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.


class RealDwell:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.reactor = self.printer.get_reactor()
        self.printer.lookup_object('gcode').register_command(
            'REAL_DWELL', self.cmd_REAL_DWELL, desc=self.cmd_REAL_DWELL_help)

    cmd_REAL_DWELL_help = "Test only: wait SECONDS in real time"
    def cmd_REAL_DWELL(self, gcmd):
        seconds = gcmd.get_float('SECONDS', minval=0., maxval=60.)
        self.reactor.pause(self.reactor.monotonic() + seconds)


def load_config(config):
    return RealDwell(config)
