# Unit tests of router/link/link.py, without klippy
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import json
from router.link.sansio import rpc


class TimerReactor:
    """What Link uses of klippy's reactor: timers and a clock."""
    NOW, NEVER = 0., 9999999999999999.

    def monotonic(self):
        return self.now

    def __init__(self):
        self.now = 100.
        self.timers = []

    def register_timer(self, callback, waketime=NEVER):
        timer = [callback, waketime]
        self.timers.append(timer)
        return timer

    def update_timer(self, timer, waketime):
        timer[1] = waketime

    def fire(self, timer):
        """Runs a timer the way the reactor does when it is due."""
        self.now = max(self.now, timer[1])
        timer[1] = timer[0](self.now)


class SentFrames:
    connected, generation, owner = True, 1, None

    def __init__(self):
        self.frames = []

    def buffered(self):
        return 0

    def send(self, frame):
        self.frames.append(json.loads(frame))


def test_link_times_requests_out_by_the_earliest_deadline():
    from router.link.link import Link
    reactor, transport = TimerReactor(), SentFrames()
    link = Link(reactor, transport, listener=None)
    timer, = reactor.timers     # the link's only timer: its timeouts
    got = []
    def callback(result, error):
        got.append(error and error.kind)
    for method, timeout in (('a', 5.), ('b', 2.), ('c', 9.)):
        link.request(method, {}, callback, timeout, inline=True)
    ids = {f['method']: f['id'] for f in transport.frames}
    assert timer[1] == 102.
    # A reply leaves the timer where it is while others are pending: it
    # fires early, finds nothing due and sets itself to the next deadline
    assert link.take_now([b'{"id":%d,"result":{}}' % ids['b']])
    assert timer[1] == 102.
    reactor.fire(timer)
    assert got == [None] and timer[1] == 105.
    reactor.fire(timer)
    assert got == [None, rpc.TIMEOUT] and timer[1] == 109.
    # The last reply: nothing pending, no wake-up left
    assert link.take_now([b'{"id":%d,"result":{}}' % ids['c']])
    assert got == [None, rpc.TIMEOUT, None]
    assert timer[1] == reactor.NEVER
    # A new request sets it again
    link.request('d', {}, callback, 1.)
    assert timer[1] == reactor.now + 1.
