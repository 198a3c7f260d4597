# Periodic work at shared moments. A reactor wake costs far more than the
# little work an idle link does in it, so every periodic timer of the
# router (keepalives, watches) fires at a multiple of its interval on the
# monotonic clock: one wake serves every link of an instance, and since
# instances on one host share that clock, a keepalive arrives while its
# receiver is awake for its own.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import math


def next_due(eventtime, interval):
    """The first multiple of interval after eventtime."""
    return (math.floor(eventtime / interval) + 1.) * interval
