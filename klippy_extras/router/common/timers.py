# Timers on klippy's reactor: periodic work at shared moments, and
# dropping a timer safely.
#
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


def drop_timer(reactor, timer):
    """Unregisters a timer (or nothing) and returns None; never raises: it
    runs from klippy:disconnect, where one raise skips every later
    handler."""
    if timer is not None:
        try:
            reactor.unregister_timer(timer)
        except Exception:
            pass
    return None
