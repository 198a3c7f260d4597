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
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, http.client, os, random, sys, time, urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'tests'))
from harness import (ApiClient, Mesh, Moonraker, Runtime,  # noqa: E402
                     percentile as pct)

NOP = "[gcode_macro NOP]\ngcode:\n"
SCRIPT = "NOP"




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--calls', type=int, default=2000)
    args = ap.parse_args()
    runtime = Runtime()
    runtime.install_module()
    mesh = Mesh(runtime)
    mesh.add_router_node('a', ['b'], NOP)
    mesh.add_router_node('b', [], NOP)
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
        print("One G-code hop, %d calls each, interleaved (ms)" % (args.calls,))
        print("%-34s %8s %8s" % ('', 'p50', 'p99'))
        for name in ['floor', 'A local', 'router', 'moonraker']:
            if name in times:
                print("%-34s %8.3f %8.3f" % (
                    name if name != 'floor' else 'floor (raw client to B)',
                    pct(times[name], 50) * 1e3, pct(times[name], 99) * 1e3))
        floor50 = pct(times['floor'], 50)
        hop50 = pct(times['router'], 50) - pct(times['A local'], 50)
        hop99 = pct(times['router'], 99) - pct(times['A local'], 99)
        print("%-34s %8.3f %8.3f" % ('router hop (router - A local)',
                                     hop50 * 1e3, hop99 * 1e3))
        print("router hop / floor at p50: %.2fx (target <= 1.3x)"
              % (hop50 / floor50,))
        if 'moonraker' in times:
            print("moonraker / router hop at p50: %.1fx (target >= 3x)"
                  % (pct(times['moonraker'], 50) / hop50,))
        to_a.close()
        to_b.close()
    finally:
        if mr is not None:
            mr.stop()
        mesh.close()


if __name__ == '__main__':
    main()
