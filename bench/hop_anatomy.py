# Where the router's share of one G-code hop goes, counted, not timed
# (bench/hop_latency.py times it). On A, for each kind of call (G4 P0 on A
# itself, the same line through the test-only least module of
# tests/data/least_hop.py, and through ROUTER_GCODE_SCRIPT): the function
# calls klippy's main thread makes per call (a profile hook: Python
# functions and C functions), those in the router's own files, the
# router's busiest functions, and the garbage collections per 1000 calls
# (without the hook). No targets: figures for docs/PERFORMANCE.md.
#
#   .venv/bin/python bench/hop_anatomy.py [--calls 500]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse

from report import Report
from harness import ApiClient
from hop_latency import hop_mesh

KINDS = [('A_local', 'G4 P0'),
         ('least', 'LEAST_HOP TARGET=b WAIT=1 SCRIPT="G4 P0"'),
         ('routed', 'ROUTER_GCODE_SCRIPT TARGET=b WAIT=1 SCRIPT="G4 P0"')]


def census(to_a, script, calls, count_calls):
    for i in range(50):
        to_a.request('gcode/script', {'script': script})
    to_a.request('call_census/start', {'calls': count_calls})
    for i in range(calls):
        to_a.request('gcode/script', {'script': script})
    return to_a.request('call_census/stop', {}, 30.)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--calls', type=int, default=500)
    args = ap.parse_args()
    report = Report("The anatomy of one G-code hop, counted on A")
    mesh = hop_mesh('call_census')
    try:
        mesh.start()
        mesh.wait_links()
        to_a = ApiClient(mesh['a'].sock)
        for name, script in KINDS:
            got = census(to_a, script, args.calls, True)
            ours = {k: v for k, v in got['by_name'].items()
                    if k.startswith('router/')}
            report.figure('calls_per_call_' + name,
                          all=got['calls'] / args.calls,
                          in_router_files=sum(ours.values()) / args.calls)
            if name == 'routed':
                # Each of the router's functions a hop runs, and how often
                report.figure('router_functions_per_call', **{
                    k[len('router/'):]: v / args.calls
                    for k, v in sorted(ours.items())
                    if v >= args.calls / 2})
            gcs = census(to_a, script, 6 * args.calls, False)['collections']
            report.figure('collections_per_1000_calls_' + name, **{
                'generation_%d' % (g,): n * 1000. / (6 * args.calls)
                for g, n in enumerate(gcs)})
        to_a.close()
    finally:
        mesh.close()
    report.finish()


if __name__ == '__main__':
    main()
