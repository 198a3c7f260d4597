# Event fan-out: ROUTER_EVENT_TRIGGER on main to the handler run on each
# peer, with 1, 4 and 7 peers (8 klippy processes on this machine). The
# bench client sends the trigger to main's API socket and notes the time;
# every handler (on main itself too: the local reference) notes when it
# runs, with the clock all processes share (CLOCK_MONOTONIC_RAW; PROBE_MARK of the
# test-only lateness_probe module: one cheap native command, as a handler
# that sets an LED or a variable is). The marks are read back after the
# run, so nothing but the events travels while it is measured. "peer
# minus main" is what the delivery to another instance adds.
#
#   .venv/bin/python bench/event_latency.py [--samples N] [--peers 1,4,7]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, random, time

from report import Report
from harness import ApiClient, Mesh, Runtime, percentile

HANDLER = """
[lateness_probe]

[router event bench]
gcode: PROBE_MARK SEQ={seq}
"""


def fire(client, seq):
    """Triggers event 'bench' number seq; returns when it was sent."""
    t0 = time.clock_gettime(time.CLOCK_MONOTONIC_RAW)
    client.request('gcode/script', {
        'script': 'ROUTER_EVENT_TRIGGER EVENT=bench SEQ=%d' % (seq,)})
    return t0


def measure(runtime, npeers, samples):
    runtime.install_probe()
    mesh = Mesh(runtime)
    peers = ['p%d' % i for i in range(1, npeers + 1)]
    mesh.add_router_node('main', peers, HANDLER)
    for p in peers:
        mesh.add_router_node(p, ['main'], HANDLER)
    try:
        mesh.start()
        mesh.wait_links()
        names = ['main'] + peers
        client = ApiClient(mesh['main'].sock)
        sent = {}
        for seq in range(-20, samples):   # 20 warm-up triggers
            sent[seq] = fire(client, seq)
            time.sleep(random.uniform(.005, .015))
        time.sleep(.5)
        marks = {n: {int(k): v for k, v in mesh[n].client.request(
            'lateness_probe/marks', {})['marks'].items()} for n in names}
        client.close()
        local, remote, added = [], [], []
        for seq in range(samples):
            missing = [n for n in names if seq not in marks[n]]
            if missing:
                raise AssertionError("event %d did not run on %s"
                                     % (seq, missing))
            local.append(marks['main'][seq] - sent[seq])
            remote.extend(marks[p][seq] - sent[seq] for p in peers)
            added.extend(marks[p][seq] - marks['main'][seq] for p in peers)
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
