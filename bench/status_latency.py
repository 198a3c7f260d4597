# Status propagation: a change on the target to the callback run on the
# subscriber, through the router; beside it the floor, a raw API client
# subscribed straight to the target. Klipper samples subscribed objects
# every 0.25 s, so both are spread over 0..0.25 s; the router's own cost is
# the difference.
#
#   .venv/bin/python bench/status_latency.py [--samples N]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, random, threading, time

from report import Report
from harness import (ApiClient, Mesh, Runtime, percentile,
                     wait_until)

TARGET = """
[gcode_macro MARK]
variable_value: 0
gcode:
  SET_GCODE_VARIABLE MACRO=MARK VARIABLE=value VALUE={params.VALUE}
"""
SUBSCRIBER = """
[gcode_macro ON_MARK]
gcode:
  {action_respond_info("MARK %s" % params.GCODE_MACRO_MARK_VALUE)}
"""




def run(samples):
    runtime = Runtime()
    runtime.install_module()
    mesh = Mesh(runtime)
    mesh.add_router_node('main', ['led'], TARGET,
                         {'led': "allow: query, subscribe\n"})
    mesh.add_router_node('led', ['main'], SUBSCRIBER, {'main': (
        "subscribe: gcode_macro MARK:value\non_update: ON_MARK\n")})
    try:
        mesh.start()
        mesh.wait_links()
        main, led = mesh['main'], mesh['led']
        out = led.client
        main.gcode("MARK VALUE=0")   # warm-up; the first callback may
        time.sleep(.5)                # have run before `out` listened
        # The floor: a raw client subscribed to the same field
        floor = ApiClient(main.sock)
        floor.request('objects/subscribe', {
            'objects': {'gcode_macro MARK': ['value']},
            'response_template': {'method': 'floor'}})
        seen_floor = {}
        seen_router = {}
        def watch():
            fi = oi = 0
            while not stop:
                with floor._lock:
                    pushes = floor.pushes[fi:]
                    fi = len(floor.pushes)
                now = time.monotonic()
                for msg in pushes:
                    v = msg['params']['status'].get('gcode_macro MARK', {})
                    if 'value' in v:
                        seen_floor.setdefault(v['value'], now)
                lines = out.output[oi:]
                oi += len(lines)
                for line in lines:
                    if line.startswith('// MARK '):
                        seen_router.setdefault(int(line[8:]), now)
                time.sleep(.0005)
        stop = False
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        router_lat, floor_lat = [], []
        for i in range(1, samples + 1):
            time.sleep(random.uniform(.3, .4))   # a random refresh phase
            main.gcode("MARK VALUE=%d" % (i,))
            t0 = time.monotonic()
            wait_until(lambda: i in seen_router and i in seen_floor, 5.)
            router_lat.append(seen_router[i] - t0)
            floor_lat.append(seen_floor[i] - t0)
        stop = True
        floor.close()
        return router_lat, floor_lat
    finally:
        mesh.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--samples', type=int, default=200)
    args = ap.parse_args()
    router_lat, floor_lat = run(args.samples)
    diff = [r - f for r, f in zip(router_lat, floor_lat)]
    report = Report("Status propagation: a change on the target to the"
                    " callback on the subscriber")
    for name, vals in (("raw_subscriber_on_target", floor_lat),
                       ("router_callback_on_subscriber", router_lat),
                       ("router_minus_raw", diff)):
        report.figure(name, changes=args.samples,
                      p50_ms=percentile(vals, 50) * 1000,
                      p99_ms=percentile(vals, 99) * 1000,
                      max_ms=max(vals) * 1000)
    report.at_most('callback p99', percentile(router_lat, 99) * 1000, 260.,
                   ' ms')
    report.finish()

if __name__ == '__main__':
    main()
