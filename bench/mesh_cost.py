# What a mesh that forms itself costs on this machine:
#   1. relaying: a chain a -> b -> c -> d (each dials the next only), an
#      event triggered on a, its handler's output line timed on b (direct),
#      c (one relay) and d (two relays) from the bench client's single
#      select() loop; "added per relay" is c minus b and d minus c for the
#      same trigger. CPU of a relaying instance per event: c (runs the
#      handler and relays) minus d (runs the handler only), over the same
#      events.
#   2. discovery: 16 instances with only discover:, started at once: time
#      until every pair is ready, then idle CPU per instance over the same
#      seconds beside 16 instances that list each other in sections, and
#      one klippy without the router.
#
#   .venv/bin/python bench/mesh_cost.py [--samples 300] [--idle 20]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, os, random, socket, time
from report import Report
from output_listener import HANDLER, Listener, fire
from harness import Mesh, Runtime, cpu_seconds as cpu, percentile as pct

ALL = "gcode, query, subscribe, events"
CHAIN = ('a', 'b', 'c', 'd')


def chain_mesh(runtime):
    mesh = Mesh(runtime)
    for i, name in enumerate(CHAIN):
        text = "[router]\nname: %s\nallow_unlisted: %s\n" % (name, ALL)
        if i + 1 < len(CHAIN):
            nxt = CHAIN[i + 1]
            text += "[router %s]\nsocket: %s\n" % (nxt, mesh.sock(nxt))
        mesh.add(name, text + HANDLER)
    return mesh


def relaying(runtime, samples):
    mesh = chain_mesh(runtime)
    try:
        mesh.start()
        mesh.wait_links()
        time.sleep(1.)     # cards around the chain
        listener = Listener({n: mesh[n].sock for n in CHAIN})
        trigger = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        trigger.connect(mesh['a'].sock)
        times = {n: [] for n in CHAIN}
        added = {'first_relay': [], 'second_relay': []}
        cpu0 = None
        for seq in range(-20, samples):    # 20 warm-up triggers
            if seq == 0:
                cpu0 = {n: cpu(mesh[n].pid) for n in CHAIN}
            t0, got = fire(trigger, listener, seq, CHAIN)
            if seq >= 0:
                for n in CHAIN:
                    times[n].append(got[n] - t0)
                added['first_relay'].append(got['c'] - got['b'])
                added['second_relay'].append(got['d'] - got['c'])
            time.sleep(random.uniform(.005, .015))
        used = {n: cpu(mesh[n].pid) - cpu0[n] for n in CHAIN}
        listener.close()
        trigger.close()
        return times, added, used
    finally:
        mesh.close()


def discovering(runtime, count, seconds, discover):
    mesh = Mesh(runtime)
    names = ['n%02d' % i for i in range(count)]
    for name in names:
        if discover:
            text = "[router]\nname: %s\ndiscover: %s\n" % (
                name, os.path.join(mesh.workdir, 'n*', 'api.sock'))
        else:
            text = "[router]\nname: %s\n" % (name,) + ''.join(
                "[router %s]\nsocket: %s\n" % (n, mesh.sock(n))
                for n in names if n != name)
        mesh.add(name, text)
    mesh.add('plain', '')   # no [router] at all
    try:
        t0 = time.monotonic()
        mesh.start()
        def formed():
            for n in names:
                peers = mesh[n].router_status()['peers']
                if len(peers) != count - 1 or not all(
                        p['ready'] for p in peers.values()):
                    return False
            return True
        deadline = time.monotonic() + 120.
        while not formed():
            assert time.monotonic() < deadline, "mesh did not form"
            time.sleep(.1)
        formed_s = time.monotonic() - t0
        time.sleep(3.)
        nodes = names + ['plain']
        before = {n: cpu(mesh[n].pid) for n in nodes}
        time.sleep(seconds)
        used = {n: cpu(mesh[n].pid) - before[n] for n in nodes}
        per = sum(used[n] for n in names) / count
        return formed_s, 100. * per / seconds, 100. * used['plain'] / seconds
    finally:
        mesh.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--samples', type=int, default=300)
    ap.add_argument('--idle', type=float, default=20.)
    ap.add_argument('--mesh', type=int, default=16)
    args = ap.parse_args()
    runtime = Runtime()
    runtime.install_module()
    report = Report("What relaying and discovery cost")
    times, added, used = relaying(runtime, args.samples)
    for name, label in (('b', 'direct'), ('c', 'one_relay'),
                        ('d', 'two_relays')):
        vals = times[name]
        report.figure('trigger_to_handler_%s' % (label,),
                      triggers=args.samples, p50_ms=pct(vals, 50) * 1000,
                      p99_ms=pct(vals, 99) * 1000, max_ms=max(vals) * 1000)
    for name, vals in sorted(added.items()):
        report.figure('added_by_%s' % (name,), p50_ms=pct(vals, 50) * 1000,
                      p99_ms=pct(vals, 99) * 1000)
    relay_us = (used['c'] - used['d']) / args.samples * 1e6
    report.figure('cpu_per_event', **{
        '%s_us' % (n,): used[n] / args.samples * 1e6 for n in CHAIN})
    report.figure('relay_cpu_per_event', c_minus_d_us=relay_us)
    found = discovering(runtime, args.mesh, args.idle, True)
    listed = discovering(runtime, args.mesh, args.idle, False)
    for label, (formed_s, per, plain) in (('discovered', found),
                                          ('sections', listed)):
        report.figure('%s_mesh_of_%d' % (label, args.mesh),
                      every_pair_ready_s=formed_s,
                      idle_cpu_per_instance_pct=per,
                      klippy_without_router_pct=plain)
    # What a user sees: an event two relays away still runs within a few
    # ms. Per relay the median is the cost; the tail is mostly 5 klippy
    # processes and this client sharing 2 cores.
    worst = max(pct(v, 50) for v in added.values()) * 1000
    report.at_most('p50 added by one relay', worst, 1., ' ms')
    report.at_most('p99 trigger to handler two relays away',
                   pct(times['d'], 99) * 1000, 10., ' ms')
    report.at_most('CPU of relaying one event', relay_us, 300., ' us')
    report.at_most('idle CPU a discovered mesh adds over listed sections',
                   found[1] - listed[1], .05, ' % of a core per instance')
    report.at_most('discovered mesh of %d: every pair ready' % (args.mesh,),
                   found[0], 10., ' s')
    report.finish()

if __name__ == '__main__':
    main()
