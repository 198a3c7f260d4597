# Unit tests of router/link/sansio/backoff.py, without klippy
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
from router.link.sansio import backoff


def test_backoff_grows_caps_and_resets():
    b = backoff.Backoff(.1, 1., jitter=0.)
    assert [round(b.next_delay(), 3) for i in range(6)] == [
        .1, .2, .4, .8, 1., 1.]
    b.reset()
    assert b.next_delay() == .1
    j = backoff.Backoff(1., 1., jitter=.1, rng=lambda: 1.)
    assert abs(j.next_delay() - 1.1) < 1e-9
    j = backoff.Backoff(1., 1., jitter=.1, rng=lambda: 0.)
    assert abs(j.next_delay() - .9) < 1e-9
