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
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, time
from report import Report
from harness import (ApiClient, Mesh, Runtime, cpu_seconds as cpu,
                     wait_until)

COUNT = """
[gcode_macro COUNT]
variable_n: 0
gcode:
  SET_GCODE_VARIABLE MACRO=COUNT VARIABLE=n VALUE={printer["gcode_macro COUNT"].n + 1}
"""


def rss_mb(pid):
    for line in open('/proc/%d/status' % pid):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024.
    return 0.


def forwarding(runtime, n=10000, batch=500):
    mesh = Mesh(runtime)
    mesh.add_router_node('a', ['b'], COUNT)
    mesh.add_router_node('b', ['a'], COUNT)
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
    report = Report("What the router costs a klippy, and a full mesh")
    report.figure('forwarding_10000_scripts', sender_cpu_s=a_cpu,
                  receiver_cpu_s=b_cpu, wall_s=t_routed,
                  raw_client_receiver_cpu_s=raw_cpu, raw_wall_s=t_raw,
                  sender_us_per_script=a_cpu * 100)
    res = idle(runtime, args.idle)
    report.figure('idle_cpu', seconds=args.idle, **{
        k.replace(' ', '_'): '%.3f s (%.2f %%)' % (v, 100. * v / args.idle)
        for k, v in res.items()})
    t_ready, t_links, rss, alone = scale(runtime, args.mesh)
    report.figure('full_mesh', instances=args.mesh,
                  links=args.mesh * (args.mesh - 1), klippy_ready_s=t_ready,
                  links_ready_s=t_links,
                  rss_mean_mb=sum(rss) / len(rss), rss_max_mb=max(rss),
                  rss_total_mb=sum(rss), router_alone_mb=alone,
                  kb_per_link=(sum(rss) / len(rss) - alone) * 1024.
                  / (args.mesh - 1))
    # "Indistinguishable from an instance without the router": at most
    # 0.2 % of a core more, with 8 idle links
    overhead = 100. * (res['hub (8 links)'] - res['without [router]']) / (
        args.idle)
    report.at_most('idle overhead with 8 links', overhead, .2, ' %')
    report.finish()

if __name__ == '__main__':
    main()
