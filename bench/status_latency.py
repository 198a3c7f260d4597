# Status propagation: a change on the target to the callback run on the
# subscriber. The target runs the module, so its router sends changes
# itself (router/subscribe); beside it, a raw API client subscribed
# straight to the target with Klipper's objects/subscribe, which samples
# every 0.25 s (what a target without the module gives). Measured twice:
# while the target prints (the seed scenario: G-code runs, the router looks
# every 10 ms) and while it is idle (it looks every 0.25 s until a change).
# Then what watching costs the target: CPU over the same idle seconds, and
# print progress over the same printing seconds, beside a twin instance
# with the same links and the same print that nobody follows.
#
#   .venv/bin/python bench/status_latency.py [--samples N] [--idle S]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, os, random, threading, time

from report import Report
from harness import (ApiClient, Mesh, Runtime, cpu_seconds, percentile,
                     wait_until)

TARGET = """
[gcode_macro MARK]
variable_value: 0
gcode:
  SET_GCODE_VARIABLE MACRO=MARK VARIABLE=value VALUE={params.VALUE}

[gcode_macro NOOP]
gcode:
"""
SUBSCRIBER = """
[gcode_macro ON_MARK]
gcode:
  {action_respond_info("MARK %s" % params.GCODE_MACRO_MARK_VALUE)}
"""
# The seed scenario's field beside the bench's own
FOLLOWED = "gcode_macro MARK:value, print_stats:state"
# File-output klippy prints about 80,000 of these lines a second: enough
# for the printing phase, which must end before the print does
PRINT_LINES = 16000000


class Seen:
    """Arrival times of each MARK value, at the raw subscriber and as the
    subscriber's callback line, from one polling thread."""
    def __init__(self, floor, out):
        self.floor, self.out = floor, out
        self.floor_at, self.router_at = {}, {}
        self.stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        fi = oi = 0
        while not self.stop:
            with self.floor._lock:
                pushes = self.floor.pushes[fi:]
                fi = len(self.floor.pushes)
            now = time.monotonic()
            for msg in pushes:
                v = msg['params']['status'].get('gcode_macro MARK', {})
                if 'value' in v:
                    self.floor_at.setdefault(v['value'], now)
            lines = self.out.output[oi:]
            oi += len(lines)
            for line in lines:
                if line.startswith('// MARK ') and line[8:].isdigit():
                    self.router_at.setdefault(int(line[8:]), now)
            time.sleep(.0005)


def changes(main, seen, first, samples):
    router_lat, floor_lat = [], []
    for i in range(first, first + samples):
        time.sleep(random.uniform(.3, .4))   # a random sampling phase
        main.gcode("MARK VALUE=%d" % (i,))
        t0 = time.monotonic()
        wait_until(lambda: i in seen.router_at and i in seen.floor_at, 5.)
        router_lat.append(seen.router_at[i] - t0)
        floor_lat.append(seen.floor_at[i] - t0)
    return router_lat, floor_lat


def progress(node):
    return node.query({'virtual_sdcard': ['file_position']})[
        'virtual_sdcard']['file_position']


def run(samples, idle):
    runtime = Runtime()
    runtime.install_module()
    mesh = Mesh(runtime)
    for target in ('main', 'twin'):
        mesh.add_router_node(target, ['led'], TARGET,
                             {'led': "allow: query, subscribe\n"})
    mesh.add_router_node('led', ['main', 'twin'], SUBSCRIBER, {'main': (
        "subscribe: %s\non_update: ON_MARK\n" % (FOLLOWED,))})
    for target in ('main', 'twin'):
        with open(os.path.join(mesh[target].gcodes, 'long.gcode'), 'w') as f:
            f.write("NOOP\n" * PRINT_LINES)
    try:
        mesh.start()
        mesh.wait_links()
        main, twin, led = mesh['main'], mesh['twin'], mesh['led']
        out = led.client
        main.gcode("MARK VALUE=0")   # warm-up; the first callback may
        time.sleep(.5)                # have run before `out` listened
        floor = ApiClient(main.sock)
        floor.request('objects/subscribe', {
            'objects': {'gcode_macro MARK': ['value']},
            'response_template': {'method': 'floor'}})
        seen = Seen(floor, out)
        res = {'idle': changes(main, seen, 1, samples)}
        time.sleep(3.)   # past the fast pace after the last change
        before = {n: cpu_seconds(mesh[n].pid) for n in ('main', 'twin')}
        time.sleep(idle)
        res['idle_cpu'] = {n: cpu_seconds(mesh[n].pid) - before[n]
                           for n in ('main', 'twin')}
        for node in (main, twin):
            node.gcode("SDCARD_PRINT_FILE FILENAME=long.gcode")
        start = {n: progress(mesh[n]) for n in ('main', 'twin')}
        res['printing'] = changes(main, seen, 100000, samples)
        res['progress'] = {n: progress(mesh[n]) - start[n]
                           for n in ('main', 'twin')}
        state = main.query({'print_stats': ['state']})['print_stats']
        assert state['state'] == 'printing', "the print ended too soon"
        # Paused, main is looked at every 10 ms (the twin is not)
        for node in (main, twin):
            node.gcode("PAUSE")
        time.sleep(3.)
        before = {n: cpu_seconds(mesh[n].pid) for n in ('main', 'twin')}
        time.sleep(idle / 2.)
        res['paused_cpu'] = {n: cpu_seconds(mesh[n].pid) - before[n]
                             for n in ('main', 'twin')}
        seen.stop = True
        floor.close()
        return res
    finally:
        mesh.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--samples', type=int, default=150)
    ap.add_argument('--idle', type=float, default=20.)
    args = ap.parse_args()
    res = run(args.samples, args.idle)
    report = Report("Status propagation: a change on the target to the"
                    " callback on the subscriber")
    for phase in ('printing', 'idle'):
        router_lat, floor_lat = res[phase]
        for name, vals in (("klipper_subscription_raw_client", floor_lat),
                           ("router_callback_on_subscriber", router_lat)):
            report.figure('%s_%s' % (name, phase), changes=args.samples,
                          p50_ms=percentile(vals, 50) * 1000,
                          p99_ms=percentile(vals, 99) * 1000,
                          max_ms=max(vals) * 1000)
    used = res['idle_cpu']
    fields = len(FOLLOWED.split(','))
    watch = 100. * (used['main'] - used['twin']) / args.idle
    report.figure('watching_cpu_idle', seconds=args.idle, fields=fields,
                  target_pct=100. * used['main'] / args.idle,
                  twin_pct=100. * used['twin'] / args.idle,
                  watching_pct=watch, per_field_pct=watch / fields)
    used = res['paused_cpu']
    watch_paused = 100. * (used['main'] - used['twin']) / (args.idle / 2.)
    report.figure('watching_cpu_paused', seconds=args.idle / 2.,
                  fields=fields, watching_pct=watch_paused)
    done = res['progress']
    report.figure('watching_while_printing', main_bytes=done['main'],
                  twin_bytes=done['twin'],
                  main_over_twin=done['main'] / max(1, done['twin']))
    report.at_most('change to callback p99 while printing',
                   percentile(res['printing'][0], 99) * 1000, 30., ' ms')
    report.at_most('change to callback p99 while idle',
                   percentile(res['idle'][0], 99) * 1000, 260., ' ms')
    report.at_most('CPU of watching the seed scenario\'s fields, idle',
                   watch, .2, ' % of a core')
    report.finish()

if __name__ == '__main__':
    main()
