# Event fan-out: ROUTER_EVENT_TRIGGER on main to the handler macro run on
# each peer, with 1, 4 and 7 peers (8 klippy processes on this machine).
# Measured from the bench client: the trigger sent to main's API socket to
# the handler's output line arriving from each peer's API socket. The same
# path with the handler on main itself is printed as the local reference.
#
#   .venv/bin/python bench/event_latency.py [--samples N] [--peers 1,4,7]
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, os, random, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'tests'))
from harness import Mesh, Runtime, wait_until  # noqa: E402

HANDLER = """
[gcode_macro BENCH_REC]
gcode:
  {action_respond_info("EV %s" % params.SEQ)}

[router event bench]
gcode: BENCH_REC
"""


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100. * (len(values)
                                                              - 1))))]


def measure(runtime, npeers, samples):
    mesh = Mesh(runtime)
    peers = ['p%d' % i for i in range(1, npeers + 1)]
    mesh.add_router_node('main', peers, HANDLER)
    for p in peers:
        mesh.add_router_node(p, [], HANDLER)
    try:
        mesh.start()
        mesh.wait_links()
        clients = {name: mesh[name].client for name in ['main'] + peers}
        seen = {name: 0 for name in clients}
        def arrivals(seq):
            got = {}
            tag = '// EV %d' % (seq,)
            for name, c in clients.items():
                with c._lock:
                    lines = c.output[seen[name]:]
                for line in lines:
                    if line == tag:
                        got[name] = time.monotonic()
            return got
        local, remote = [], []
        for seq in range(-20, samples):   # 20 warm-up triggers
            times = {}
            t0 = time.monotonic()
            clients['main'].request('gcode/script', {
                'script': 'ROUTER_EVENT_TRIGGER EVENT=bench SEQ=%d' % (seq,)})
            def all_seen():
                now = time.monotonic()
                for name, c in clients.items():
                    if name in times:
                        continue
                    with c._lock:
                        if ('// EV %d' % (seq,)) in c.output[seen[name]:]:
                            times[name] = now
                return len(times) == len(clients)
            wait_until(all_seen, 5., interval=.0002)
            for name, c in clients.items():
                with c._lock:
                    seen[name] = len(c.output)
            if seq >= 0:
                local.append(times['main'] - t0)
                remote.extend(times[p] - t0 for p in peers)
            time.sleep(random.uniform(.005, .015))
        return local, remote
    finally:
        mesh.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--samples', type=int, default=300)
    ap.add_argument('--peers', default='1,4,7')
    args = ap.parse_args()
    runtime = Runtime()
    runtime.install_module()
    print("Event trigger to handler, %d triggers each (ms)" % (args.samples,))
    print("%-28s %8s %8s %8s" % ('', 'p50', 'p99', 'max'))
    worst = 0.
    for n in [int(x) for x in args.peers.split(',')]:
        local, remote = measure(runtime, n, args.samples)
        for name, vals in (("%d peer(s): on each peer" % n, remote),
                           ("%d peer(s): on main itself" % n, local)):
            print("%-28s %8.2f %8.2f %8.2f" % (
                name, percentile(vals, 50) * 1000,
                percentile(vals, 99) * 1000, max(vals) * 1000))
        worst = max(worst, percentile(remote, 99))
    print("target p99 < 5 ms on the peers: %s (worst p99 %.2f ms)" % (
        "met" if worst < .005 else "MISSED", worst * 1000))


if __name__ == '__main__':
    main()
