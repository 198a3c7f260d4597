# What the router costs a klippy, and a 16-instance mesh on this machine:
#   1. CPU per 10,000 forwarded scripts (ROUTER_GCODE_SCRIPT WAIT=0), on
#      the sender and the receiver, beside a raw API client sending the
#      same 10,000 scripts to the receiver
#   2. idle CPU of an instance with 8 idle links, beside an instance
#      without the router, over the same 30 s
#   3. a full mesh of 16 instances started at once: time until all 240
#      links are ready, memory per instance, memory per link
#
#   .venv/bin/python bench/cost_scale.py [--idle 30] [--mesh 16]
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'tests'))
from harness import ApiClient, Mesh, Runtime, wait_until  # noqa: E402

COUNT = """
[gcode_macro COUNT]
variable_n: 0
gcode:
  SET_GCODE_VARIABLE MACRO=COUNT VARIABLE=n VALUE={printer["gcode_macro COUNT"].n + 1}
"""
TICK = os.sysconf('SC_CLK_TCK')


def cpu(pid):
    fields = open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(TICK)


def rss_mb(pid):
    for line in open('/proc/%d/status' % pid):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024.
    return 0.


def forwarding(runtime, n=10000, batch=500):
    mesh = Mesh(runtime)
    mesh.add_router_node('a', ['b'], COUNT)
    mesh.add_router_node('b', [], COUNT)
    try:
        mesh.start()
        mesh.wait_links()
        a, b = mesh['a'], mesh['b']
        to_a, to_b = ApiClient(a.sock), ApiClient(b.sock)
        def count():
            return b.macro_vars('COUNT')['n']
        # Through the router: a forwards, b runs
        ca, cb = cpu(a.pid), cpu(b.pid)
        t0 = time.monotonic()
        line = 'ROUTER_GCODE_SCRIPT TARGET=b SCRIPT=COUNT\n'
        for i in range(n // batch):
            # Stay under the 1000 requests a link lets wait (flow control)
            wait_until(lambda: count() >= (i - 1) * batch, 60.,
                       interval=.01)
            to_a.request('gcode/script', {'script': line * batch}, 60.)
        wait_until(lambda: count() == n, 120., interval=.05)
        routed = (cpu(a.pid) - ca, cpu(b.pid) - cb, time.monotonic() - t0)
        # The same scripts from a raw client straight to b, one request
        # each, as the router sends them
        cb = cpu(b.pid)
        t0 = time.monotonic()
        for i in range(n):
            to_b.request('gcode/script', {'script': 'COUNT'})
        wait_until(lambda: count() == 2 * n, 60., interval=.05)
        raw = (cpu(b.pid) - cb, time.monotonic() - t0)
        to_a.close()
        to_b.close()
        return routed, raw
    finally:
        mesh.close()


def idle(runtime, seconds, links=8):
    mesh = Mesh(runtime)
    peers = ['p%d' % i for i in range(links)]
    mesh.add_router_node('hub', peers, '')
    for p in peers:
        mesh.add_router_node(p, [], '')
    mesh.add('plain', '')   # no [router] at all
    try:
        mesh.start()
        mesh.wait_links()
        time.sleep(2.)
        nodes = {'hub (8 links)': mesh['hub'], 'a peer of hub': mesh['p0'],
                 'without [router]': mesh['plain']}
        before = {k: cpu(v.pid) for k, v in nodes.items()}
        time.sleep(seconds)
        return {k: cpu(v.pid) - before[k] for k, v in nodes.items()}
    finally:
        mesh.close()


def scale(runtime, count):
    mesh = Mesh(runtime)
    names = ['n%02d' % i for i in range(count)]
    for name in names:
        mesh.add_router_node(name, [n for n in names if n != name], '')
    mesh.add_router_node('alone', [], '')   # [router], no peer
    try:
        t0 = time.monotonic()
        for name in names + ['alone']:
            mesh[name].start()
        for name in names + ['alone']:
            mesh[name].wait_ready(60.)
        t_ready = time.monotonic() - t0
        mesh.wait_links(120.)
        t_links = time.monotonic() - t0
        time.sleep(2.)
        rss = [rss_mb(mesh[n].pid) for n in names]
        alone = rss_mb(mesh['alone'].pid)
        return t_ready, t_links, rss, alone
    finally:
        mesh.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--idle', type=float, default=30.)
    ap.add_argument('--mesh', type=int, default=16)
    args = ap.parse_args()
    runtime = Runtime()
    runtime.install_module()
    (a_cpu, b_cpu, t_routed), (raw_cpu, t_raw) = forwarding(runtime)
    print("1. 10,000 scripts, CPU seconds")
    print("   through the router: sender %.2f s, receiver %.2f s"
          " (wall %.1f s)" % (a_cpu, b_cpu, t_routed))
    print("   raw client to the receiver: receiver %.2f s (wall %.1f s)"
          % (raw_cpu, t_raw))
    print("   sender's cost per forwarded script: %.0f us" % (a_cpu * 100,))
    res = idle(runtime, args.idle)
    print("2. idle CPU over %.0f s" % (args.idle,))
    for k, v in res.items():
        print("   %-20s %.3f s (%.2f %%)" % (k, v, 100. * v / args.idle))
    t_ready, t_links, rss, alone = scale(runtime, args.mesh)
    links = args.mesh * (args.mesh - 1)
    print("3. full mesh of %d instances (%d links), started at once"
          % (args.mesh, links))
    print("   all klippy ready after %.1f s; every link ready after %.1f s"
          % (t_ready, t_links))
    print("   RSS per instance: mean %.1f MB, max %.1f MB; total %.0f MB"
          % (sum(rss) / len(rss), max(rss), sum(rss)))
    print("   [router] without peers: %.1f MB; per link: %.0f KB"
          % (alone, (sum(rss) / len(rss) - alone) * 1024. / (args.mesh - 1)))


if __name__ == '__main__':
    main()
