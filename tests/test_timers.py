# Unit tests of router/common/timers.py, without klippy
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
from router.common import timers


def test_periodic_work_of_every_link_and_instance_shares_its_moments():
    # Two links (or two instances) that set the same pace at different
    # moments wake together, always strictly later, never a whole
    # interval late
    for start in (0., 3.99, 4., 4.01, 12345.678):
        due = timers.next_due(start, 2.)
        assert start < due <= start + 2.
        assert due % 2. == 0.
    assert timers.next_due(4.01, 2.) == timers.next_due(5.9, 2.) == 6.
    assert timers.next_due(1.3, .25) == 1.5
