# One G-code hop, side by side in one run, calls interleaved:
#   floor      a raw API client sends the script straight to B (gcode/script)
#   router     ROUTER_GCODE_SCRIPT TARGET=B WAIT=1 SCRIPT=<script>, issued
#              on A: measured from a client of A, minus the same client's
#              cost of a local command on A ("A local", also measured)
#   moonraker  the PyPI moonraker package in front of B, over HTTP
#              (keep-alive), POST /printer/gcode/script
#
#   .venv/bin/python bench/hop_latency.py [--calls 2000]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, http.client, random, time, urllib.parse

from report import Report
from harness import ApiClient, Mesh, Moonraker, Runtime, percentile as pct

NOP = "[gcode_macro NOP]\ngcode:\n"
SCRIPT = "NOP"




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--calls', type=int, default=2000)
    args = ap.parse_args()
    report = Report("One G-code hop: floor, router, Moonraker, interleaved")
    runtime = Runtime()
    runtime.install_module()
    mesh = Mesh(runtime)
    mesh.add_router_node('a', ['b'], NOP)
    mesh.add_router_node('b', ['a'], NOP)
    mr = None
    try:
        mesh.start()
        mesh.wait_links()
        to_a = ApiClient(mesh['a'].sock)
        to_b = ApiClient(mesh['b'].sock)
        methods = {
            'floor': lambda: to_b.request('gcode/script', {'script': SCRIPT}),
            'A local': lambda: to_a.request('gcode/script',
                                            {'script': SCRIPT}),
            'router': lambda: to_a.request('gcode/script', {
                'script': 'ROUTER_GCODE_SCRIPT TARGET=b WAIT=1 SCRIPT=%s'
                          % (SCRIPT,)}),
        }
        if Moonraker.available():
            mr = Moonraker(mesh['b']).start()
            conn = http.client.HTTPConnection('127.0.0.1', mr.port,
                                              timeout=10)
            path = '/printer/gcode/script?' + urllib.parse.urlencode(
                {'script': SCRIPT})
            def via_moonraker():
                conn.request('POST', path, body=b'')
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200
            methods['moonraker'] = via_moonraker
        times = {name: [] for name in methods}
        names = list(methods)
        for i in range(args.calls + 100):
            random.shuffle(names)
            for name in names:
                t0 = time.perf_counter()
                methods[name]()
                if i >= 100:   # warm-up
                    times[name].append(time.perf_counter() - t0)
        for name in ['floor', 'A local', 'router', 'moonraker']:
            if name in times:
                report.figure(name.replace(' ', '_'), calls=args.calls,
                              p50_ms=pct(times[name], 50) * 1e3,
                              p99_ms=pct(times[name], 99) * 1e3)
        floor50 = pct(times['floor'], 50)
        hop50 = pct(times['router'], 50) - pct(times['A local'], 50)
        hop99 = pct(times['router'], 99) - pct(times['A local'], 99)
        report.figure('router_hop', p50_ms=hop50 * 1e3, p99_ms=hop99 * 1e3)
        report.at_most('router hop / floor at p50', hop50 / floor50, 1.3,
                       'x')
        if 'moonraker' in times:
            report.at_least('moonraker / router hop at p50',
                            pct(times['moonraker'], 50) / hop50, 3., 'x')
        to_a.close()
        to_b.close()
    finally:
        if mr is not None:
            mr.stop()
        mesh.close()
    report.finish()


if __name__ == '__main__':
    main()
