# Capped exponential backoff for reconnecting to an absent peer
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import random


class Backoff:
    def __init__(self, first, maximum, factor=2., jitter=.1, rng=None):
        self.first = first
        self.maximum = max(first, maximum)
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.random
        self._next = first

    def reset(self):
        self._next = self.first

    def busy_delay(self):
        """Klipper listens with a backlog of one: a peer whose backlog is
        full is there, so try again soon (spread), without backing off."""
        return .01 + .04 * self._rng()

    def next_delay(self):
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        # Jitter keeps a restarted mesh from dialing one listen(1) backlog
        # in lock step.
        spread = delay * self.jitter
        return max(0., delay - spread + 2. * spread * self._rng())
