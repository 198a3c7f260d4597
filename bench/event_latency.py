# Event fan-out: ROUTER_EVENT_TRIGGER on main to the handler macro run on
# each peer, with 1, 4 and 7 peers (8 klippy processes on this machine).
# Measured from the bench client: the trigger sent to main's API socket to
# the handler's output line arriving from each peer's API socket (one
# select() loop timestamps every arrival). The same path with the handler
# on main itself is the local reference; "peer minus main" is what the
# delivery to another instance adds.
#
#   .venv/bin/python bench/event_latency.py [--samples N] [--peers 1,4,7]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, json, random, select, socket, time

from report import Report
from harness import Mesh, Runtime, percentile

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


def measure(runtime, npeers, samples):
    mesh = Mesh(runtime)
    peers = ['p%d' % i for i in range(1, npeers + 1)]
    mesh.add_router_node('main', peers, HANDLER)
    for p in peers:
        mesh.add_router_node(p, ['main'], HANDLER)
    try:
        mesh.start()
        mesh.wait_links()
        names = ['main'] + peers
        listener = Listener({n: mesh[n].sock for n in names})
        trigger = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        trigger.connect(mesh['main'].sock)
        local, remote, added = [], [], []
        for seq in range(-20, samples):   # 20 warm-up triggers
            t0, times = fire(trigger, listener, seq, names)
            if seq >= 0:
                local.append(times['main'] - t0)
                remote.extend(times[p] - t0 for p in peers)
                added.extend(times[p] - times['main'] for p in peers)
            time.sleep(random.uniform(.005, .015))
        listener.close()
        trigger.close()
        return local, remote, added
    finally:
        mesh.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--samples', type=int, default=300)
    ap.add_argument('--peers', default='1,4,7')
    args = ap.parse_args()
    runtime = Runtime()
    runtime.install_module()
    report = Report("Event trigger to handler")
    worst = 0.
    for n in [int(x) for x in args.peers.split(',')]:
        local, remote, added = measure(runtime, n, args.samples)
        for name, vals in (("on_each_peer", remote), ("on_main_itself", local),
                           ("peer_minus_main", added)):
            report.figure(name, peers=n, triggers=args.samples,
                          p50_ms=percentile(vals, 50) * 1000,
                          p99_ms=percentile(vals, 99) * 1000,
                          max_ms=max(vals) * 1000)
        worst = max(worst, percentile(remote, 99))
    report.target('p99 on the peers', worst * 1000, 5., worst < .005, ' ms')
    report.finish()

if __name__ == '__main__':
    main()
