# Status propagation: a change on the target to the callback run on the
# subscriber. The target runs the module, so its router sends each change
# as it happens (router/subscribe); beside it, a raw API client subscribed
# straight to the target with Klipper's objects/subscribe, which samples
# every 0.25 s (what a target without the module gives). Then what
# watching costs the target: its CPU over the same idle seconds beside a
# twin instance with the same links that nobody follows.
#
#   .venv/bin/python bench/status_latency.py [--samples N] [--idle S]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, random, threading, time

from report import Report
from harness import (ApiClient, Mesh, Runtime, cpu_seconds, percentile,
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




# The seed scenario's field beside the bench's own
FOLLOWED = "gcode_macro MARK:value, print_stats:state"


def run(samples, idle):
    runtime = Runtime()
    runtime.install_module()
    mesh = Mesh(runtime)
    for target in ('main', 'twin'):
        mesh.add_router_node(target, ['led'], TARGET,
                             {'led': "allow: query, subscribe\n"})
    mesh.add_router_node('led', ['main', 'twin'], SUBSCRIBER, {'main': (
        "subscribe: %s\non_update: ON_MARK\n" % (FOLLOWED,))})
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
                    if line.startswith('// MARK ') and line[8:].isdigit():
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
        time.sleep(1.)
        before = {n: cpu_seconds(mesh[n].pid) for n in ('main', 'twin')}
        time.sleep(idle)
        used = {n: cpu_seconds(mesh[n].pid) - before[n]
                for n in ('main', 'twin')}
        return router_lat, floor_lat, used
    finally:
        mesh.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--samples', type=int, default=200)
    ap.add_argument('--idle', type=float, default=20.)
    args = ap.parse_args()
    router_lat, floor_lat, used = run(args.samples, args.idle)
    report = Report("Status propagation: a change on the target to the"
                    " callback on the subscriber")
    for name, vals in (("klipper_subscription_raw_client", floor_lat),
                       ("router_callback_on_subscriber", router_lat)):
        report.figure(name, changes=args.samples,
                      p50_ms=percentile(vals, 50) * 1000,
                      p99_ms=percentile(vals, 99) * 1000,
                      max_ms=max(vals) * 1000)
    fields = len(FOLLOWED.split(','))
    watch = 100. * (used['main'] - used['twin']) / args.idle
    report.figure('watching_cpu', seconds=args.idle, fields=fields,
                  target_pct=100. * used['main'] / args.idle,
                  twin_pct=100. * used['twin'] / args.idle,
                  watching_pct=watch, per_field_pct=watch / fields)
    report.at_most('change to callback p99',
                   percentile(router_lat, 99) * 1000, 30., ' ms')
    report.at_most('CPU of watching the seed scenario\'s fields', watch,
                   .2, ' % of a core')
    report.finish()

if __name__ == '__main__':
    main()
