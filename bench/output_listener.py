# Timing handlers by their console lines: the trigger goes to one
# instance's API socket, and one select() loop timestamps each instance's
# output line as it arrives (bench/mesh_cost.py, where events are relayed
# along a chain)
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import json, select, socket, time

HANDLER = """
[gcode_macro BENCH_REC]
gcode:
  {action_respond_info("EV %s" % params.SEQ)}

[router event bench]
gcode: BENCH_REC
"""


def fire(trigger, listener, seq, names):
    """Triggers event 'bench' number seq through the raw socket trigger;
    returns when it was sent and {name: when its handler's line came}."""
    msg = json.dumps({'id': seq + 100, 'method': 'gcode/script',
                      'params': {'script': 'ROUTER_EVENT_TRIGGER'
                                 ' EVENT=bench SEQ=%d' % (seq,)}})
    t0 = time.monotonic()
    trigger.sendall(msg.encode() + b'\x03')
    times = listener.wait_for('"// EV %d"' % (seq,), names)
    trigger.recv(65536)   # the reply, long since there
    return t0, times


class Listener:
    """One thread, raw sockets and select(): the measurement must not cost
    more than what it measures (8 reader threads fight over the GIL)."""
    def __init__(self, socks):
        self.socks = {}
        self.bufs = {}
        for name, path in socks.items():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(json.dumps({'id': 1, 'method': 'gcode/subscribe_output',
                                  'params': {'response_template': {}}}
                                 ).encode() + b'\x03')
            self.socks[s] = name
            self.bufs[s] = b''
        # Output before the subscription is in place would be lost
        self.wait_for('"id":1', list(socks))

    def wait_for(self, tag, names, timeout=5.):
        """{name: time the line `tag` arrived from that instance}."""
        got = {}
        deadline = time.monotonic() + timeout
        want = tag.encode()
        while len(got) < len(names):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("only %s saw %s" % (sorted(got), tag))
            ready, _, _ = select.select(list(self.socks), [], [], left)
            now = time.monotonic()
            for s in ready:
                data = s.recv(65536)
                if not data:
                    raise AssertionError("closed")
                buf = self.bufs[s] + data
                frames = buf.split(b'\x03')
                self.bufs[s] = frames.pop()
                for frame in frames:
                    if want in frame:
                        got[self.socks[s]] = now
        return got

    def close(self):
        for s in self.socks:
            s.close()
