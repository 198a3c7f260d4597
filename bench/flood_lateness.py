# A fair flood: what 8 flooding peers make the host do, with the host
# alone on one core (taskset) and the peers and this bench on the other, so
# the host's reactor lateness measures the router's work on it and not 9
# processes fighting for 2 cores. Each peer, driven at full speed, fires
# events and sends scripts with WAIT=1 to the host; every script a peer saw
# acknowledged must have run on the host.
#
#   .venv/bin/python bench/flood_lateness.py [--seconds 60]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, os, subprocess, time
from report import Report
from harness import Mesh, Runtime, flood, wait_until
from test_stress import FLOOD_PEER, HOST_MACROS

# The flood test's host (lateness probe, COUNT run by each 'flood' event),
# and what counts the scripts run
# The main thread's stack is sampled when the probe's timer is 15 ms late
HOST = HOST_MACROS.replace("[lateness_probe]\n",
                           "[lateness_probe]\nstall_trace: 0.015\n") + r"""
[gcode_macro RAN]
variable_n: 0
gcode:
  SET_GCODE_VARIABLE MACRO=RAN VARIABLE=n VALUE={printer["gcode_macro RAN"].n + 1}
"""
assert 'stall_trace' in HOST
# The flood test's peers, with each script acknowledged (WAIT=1) and
# counted where it runs
PEER = FLOOD_PEER.replace("TARGET=main SCRIPT=NOP",
                          "TARGET=main WAIT=1 SCRIPT=RAN")
assert PEER != FLOOD_PEER
PEERS = ['p%d' % i for i in range(1, 9)]


def pin(pid, cpu):
    subprocess.run(['taskset', '-a', '-p', '-c', str(cpu), str(pid)],
                   check=True, stdout=subprocess.DEVNULL)


def stolen(core):
    """Seconds the hypervisor did not run this virtual CPU (the steal
    column of /proc/stat)."""
    with open('/proc/stat') as f:
        for line in f:
            fields = line.split()
            if fields[0] == 'cpu%d' % (core,) and len(fields) > 8:
                return int(fields[8]) / float(os.sysconf('SC_CLK_TCK'))
    return 0.


def trace(report, late):
    """Each pause of the host's reactor over 10 ms, beside the garbage
    collections over 5 ms that overlapped it (the probe's trace)."""
    for due, took, wall, cpu, queued in late.get('pauses', []):
        during = [c for c in late.get('collections', [])
                  if c[0] < due + took and c[0] + c[1] > due]
        stacks = [t[1] for t in late.get('stalls', [])
                  if due - .001 <= t[0] <= due + .001]
        report.figure('pause', late_ms=took * 1000, since_last_tick_ms=(
            wall * 1000), klippy_cpu_ms=cpu * 1000,
            runnable_waiting_ms=queued * 1000, collections=' '.join(
                'generation %s %.1f ms' % (c[2], c[1] * 1000)
                for c in during) or 'none',
            stack=stacks[0] if stacks else 'not sampled')
    gcs = late.get('collections', [])
    report.figure('collections_over_5_ms', count=len(gcs),
                  longest_ms=max([c[1] for c in gcs] or [0.]) * 1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=float, default=60.)
    args = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores")
    runtime = Runtime()
    runtime.install_module()
    runtime.install_probe()
    mesh = Mesh(runtime)
    mesh.add_router_node('main', PEERS, HOST)
    for p in PEERS:
        mesh.add_router_node(p, ['main'], PEER)
    report = Report("A fair flood: 8 peers on one core, the host on the"
                    " other")
    try:
        mesh.start()
        mesh.wait_links()
        main = mesh['main']
        pin(main.pid, 0)
        for p in PEERS:
            pin(mesh[p].pid, 1)
        os.sched_setaffinity(0, {1})
        time.sleep(1.)
        main.client.request('lateness_probe/reset', {})
        steal = stolen(0)
        refused = flood(mesh, PEERS, 'FLOOD_EV\nFLOOD_SC\n' * 10,
                        args.seconds, timeout=60.)
        late = main.query({'lateness_probe': None})['lateness_probe']
        steal = stolen(0) - steal
        sent = sum(mesh[p].macro_vars('FLOOD_EV')['n'] for p in PEERS)
        acked = sum(mesh[p].macro_vars('FLOOD_SC')['n'] for p in PEERS)
        wait_until(lambda: main.macro_vars('RAN')['n'] >= acked, 30.)
        time.sleep(2.)
        ran = main.macro_vars('RAN')['n']
        handled = main.macro_vars('COUNT')['n']
        report.figure('flood', peers=len(PEERS), seconds=args.seconds,
                      events_fired=sent, events_run_on_host=handled,
                      scripts_acknowledged=acked, scripts_run_on_host=ran,
                      batches_refused=refused,
                      host_state=main.state(),
                      lateness_p50_ms=late.get('p50', 0.) * 1000,
                      lateness_p99_ms=late['p99'] * 1000,
                      lateness_max_ms=late['max'] * 1000,
                      timer_samples=late['count'])
        trace(report, late)
        report.figure('host_core_stolen_by_the_hypervisor', seconds=steal)
        report.at_most('host lateness p99', late['p99'] * 1000, 5., ' ms')
        report.at_most('host lateness max', late['max'] * 1000, 50., ' ms')
        report.at_most('acknowledged scripts that did not run',
                       max(0, acked - ran), 0, '')
    finally:
        mesh.close()
    report.finish()


if __name__ == '__main__':
    main()
