# One G-code hop, side by side in one run, calls interleaved and shuffled:
#   floor      a raw API client sends the command straight to B
#              (gcode/script)
#   A local    the same client sends the same command to A
#   routed     ROUTER_GCODE_SCRIPT TARGET=B WAIT=1 SCRIPT=<command>, sent
#              to A by the same client
#   least      LEAST_HOP TARGET=B WAIT=1 SCRIPT=<command>, sent to A: a
#              test-only module (tests/data/least_hop.py) that does the
#              least any module can: Klipper parses a line as long, one
#              request on B's socket to the endpoint the router uses, a
#              completion. No checks, no timeouts: the floor of a hop.
#   moonraker  the PyPI moonraker package in front of B, over HTTP
#              (keep-alive), POST /printer/gcode/script
# The hop is routed minus A local of the same round (what the router adds
# to a call A could make itself), against the floor of that round; each
# for a native command (G4 P0) and for an empty macro (NOP). The least
# module's hop, measured the same way, and the router's time above it
# (routed minus least, paired by round) say how much of the hop is the
# router's own code. Moonraker's
# calls come in rounds of their own after those: interleaved with them,
# its busy process slowed the floor calls (p50 0.22 -> 0.26 ms here) and
# so flattered the hop's ratio (1.4x -> 1.2x at p50).
#
#   .venv/bin/python bench/hop_latency.py [--calls 2000]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, http.client, random, time, urllib.parse

from report import Report
from harness import (ApiClient, Mesh, Moonraker, Runtime, cpu_seconds,
                     percentile as pct)

NOP = "[gcode_macro NOP]\ngcode:\n"




COMMANDS = {'native': 'G4 P0', 'macro': 'NOP'}


def rounds(methods, calls, warmup=100):
    """Each round calls every method once, in a new random order."""
    times = {name: [] for name in methods}
    names = list(methods)
    for i in range(calls + warmup):
        random.shuffle(names)
        for name in names:
            t0 = time.perf_counter()
            methods[name]()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def client_methods(to_a, to_b, target='b', floor='floor', least=False):
    """The command straight to B (floor), to A, and routed by A to B."""
    methods = {}
    for kind, cmd in COMMANDS.items():
        def call(client, script):
            return lambda: client.request('gcode/script', {'script': script})
        methods[floor + ' ' + kind] = call(to_b, cmd)
        methods['A local ' + kind] = call(to_a, cmd)
        methods['routed ' + kind] = call(
            to_a, 'ROUTER_GCODE_SCRIPT TARGET=%s WAIT=1 SCRIPT="%s"'
            % (target, cmd))
        if least:
            methods['least ' + kind] = call(
                to_a, 'LEAST_HOP TARGET=%s WAIT=1 SCRIPT="%s"'
                % (target, cmd))
    return methods


def moonraker_method(mr):
    conn = http.client.HTTPConnection('127.0.0.1', mr.port, timeout=10)
    path = '/printer/gcode/script?' + urllib.parse.urlencode(
        {'script': COMMANDS['macro']})
    def via_moonraker():
        conn.request('POST', path, body=b'')
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    return via_moonraker


def report_hops(report, times, calls):
    for name in sorted(times):
        report.figure(name.replace(' ', '_'), calls=calls,
                      p50_ms=pct(times[name], 50) * 1e3,
                      p99_ms=pct(times[name], 99) * 1e3)
    hops = {}
    for kind in COMMANDS:
        # Paired by round: the routed call minus A's local call
        hop = [r - l for r, l in zip(times['routed ' + kind],
                                     times['A local ' + kind])]
        floor = times['floor ' + kind]
        hops[kind] = hop
        report.figure('hop_' + kind, p50_ms=pct(hop, 50) * 1e3,
                      p99_ms=pct(hop, 99) * 1e3,
                      ratio_p50=pct(hop, 50) / pct(floor, 50),
                      ratio_p99=pct(hop, 99) / pct(floor, 99))
        report.at_most('hop / floor at p50, %s command' % (kind,),
                       pct(hop, 50) / pct(floor, 50), 1.2, 'x')
        report.at_most('hop / floor at p99, %s command' % (kind,),
                       pct(hop, 99) / pct(floor, 99), 1.5, 'x')
        if 'least ' + kind in times:
            report_least(report, times, kind)
    return hops


def report_least(report, times, kind):
    least = [r - l for r, l in zip(times['least ' + kind],
                                   times['A local ' + kind])]
    above = [r - l for r, l in zip(times['routed ' + kind],
                                   times['least ' + kind])]
    floor = times['floor ' + kind]
    report.figure('least_hop_' + kind, p50_ms=pct(least, 50) * 1e3,
                  ratio_p50=pct(least, 50) / pct(floor, 50),
                  ratio_p99=pct(least, 99) / pct(floor, 99))
    report.figure('router_above_least_' + kind,
                  p50_us=pct(above, 50) * 1e6,
                  of_floor_p50=pct(above, 50) / pct(floor, 50))


def cpu_per_call(report, mesh, to_a, to_b, calls):
    """Where the hop's time goes: the CPU each klippy spends per call,
    one kind of call after the other (schedstat, both processes)."""
    kinds = [
        ('A_local', to_a, 'G4 P0'),
        ('floor', to_b, 'G4 P0'),
        # Klipper's parse of the longer line, and the handler, no link
        ('routed_to_itself', to_a, 'ROUTER_GCODE_SCRIPT TARGET=a WAIT=1'
         ' SCRIPT="G4 P0"'),
        # The link, without the waiting command
        ('routed_wait0', to_a, 'ROUTER_GCODE_SCRIPT TARGET=b WAIT=0'
         ' SCRIPT="G4 P0"'),
        ('routed', to_a, 'ROUTER_GCODE_SCRIPT TARGET=b WAIT=1'
         ' SCRIPT="G4 P0"')]
    for name, client, script in kinds:
        before = [cpu_seconds(mesh[n].pid) for n in 'ab']
        for i in range(calls):
            client.request('gcode/script', {'script': script})
        after = [cpu_seconds(mesh[n].pid) for n in 'ab']
        report.figure('cpu_per_call_' + name,
                      a_us=(after[0] - before[0]) / calls * 1e6,
                      b_us=(after[1] - before[1]) / calls * 1e6)


def hop_mesh(*test_modules):
    """Instances a and b with the router, each listing the other; a also
    with the least module (pointed at b) and the named test modules."""
    runtime = Runtime()
    runtime.install_module()
    for name in ('least_hop',) + test_modules:
        runtime.install_test_module(name)
    mesh = Mesh(runtime)
    mesh.add_router_node('a', ['b'], NOP + "\n[least_hop]\npath: %s\n"
                         % (mesh.sock('b'),) + ''.join(
                             "\n[%s]\n" % (n,) for n in test_modules))
    mesh.add_router_node('b', ['a'], NOP)
    return mesh


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--calls', type=int, default=2000)
    args = ap.parse_args()
    report = Report("One G-code hop: floor, router, Moonraker, interleaved")
    mesh = hop_mesh()
    mr = None
    try:
        mesh.start()
        mesh.wait_links()
        to_a = ApiClient(mesh['a'].sock)
        to_b = ApiClient(mesh['b'].sock)
        times = rounds(client_methods(to_a, to_b, least=True), args.calls)
        hops = report_hops(report, times, args.calls)
        cpu_per_call(report, mesh, to_a, to_b, args.calls)
        if Moonraker.available():
            mr = Moonraker(mesh['b']).start()
            via = rounds({'moonraker macro': moonraker_method(mr)},
                         args.calls)['moonraker macro']
            report.figure('moonraker_macro', calls=args.calls,
                          p50_ms=pct(via, 50) * 1e3,
                          p99_ms=pct(via, 99) * 1e3)
            report.at_least('moonraker / router hop at p50, macro',
                            pct(via, 50) / pct(hops['macro'], 50), 3., 'x')
        to_a.close()
        to_b.close()
    finally:
        if mr is not None:
            mr.stop()
        mesh.close()
    report.finish()


if __name__ == '__main__':
    main()
