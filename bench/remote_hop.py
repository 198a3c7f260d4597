# A hop to a peer on another "host" (a network namespace) through its
# Moonraker's /klippysocket bridge, side by side in one run, calls
# interleaved and shuffled:
#   plain ws   a plain websocket client (wsproto, blocking) on this host
#              sends the command to the far Klipper through that bridge
#   A local    an API client sends the same command to A (gcode/script)
#   routed     ROUTER_GCODE_SCRIPT TARGET=afc WAIT=1 SCRIPT=<command>, sent
#              to A by the same API client; A's router carries it over
#              its own websocket to the same bridge
# What the router adds is (routed - A local) of each round, less the plain
# client's call: target at most 0.2 ms at p50. For a native command
# (G4 P0) and an empty macro (NOP). Needs root (network namespaces).
#
#   .venv/bin/python bench/remote_hop.py [--calls 1000]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, sys

from report import Report
from harness import ApiClient, Runtime, percentile as pct
from hop_latency import COMMANDS, NOP, client_methods, rounds
import remote_host


def report_added(report, times, calls):
    for name in sorted(times):
        report.figure(name.replace(' ', '_'), calls=calls,
                      p50_ms=pct(times[name], 50) * 1e3,
                      p99_ms=pct(times[name], 99) * 1e3)
    for kind in COMMANDS:
        hop = [r - l for r, l in zip(times['routed ' + kind],
                                     times['A local ' + kind])]
        plain = times['plain ws ' + kind]
        added = pct(hop, 50) - pct(plain, 50)
        report.figure('remote_hop_' + kind, p50_ms=pct(hop, 50) * 1e3,
                      p99_ms=pct(hop, 99) * 1e3,
                      added_p50_ms=added * 1e3,
                      ratio_p50=pct(hop, 50) / pct(plain, 50))
        report.at_most('router adds at p50, %s command' % (kind,),
                       added * 1e3, .2, ' ms')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--calls', type=int, default=1000)
    args = ap.parse_args()
    why = remote_host.why_unavailable()
    if why is not None:
        print("remote_hop: cannot run here: %s" % (why,))
        sys.exit(2)
    import wsclient
    from test_remote import Hosts
    report = Report("A hop to another host through its Moonraker, against"
                    " a plain websocket client, interleaved")
    runtime = Runtime()
    runtime.install_module()
    hosts = Hosts(runtime).configure({'afc': ''}, {'main': ''})
    for name in ('main', 'afc'):
        with open(hosts[name].cfg, 'a') as f:
            f.write(NOP)
    try:
        hosts.start()
        mr = hosts.mr['afc']
        plain = wsclient.BridgeClient(mr.host, mr.port, key=mr.api_key())
        to_a = ApiClient(hosts['main'].sock)
        times = rounds(client_methods(to_a, plain, 'afc', 'plain ws'),
                       args.calls)
        report_added(report, times, args.calls)
        plain.close()
        to_a.close()
    finally:
        hosts.close()
    report.finish()


if __name__ == '__main__':
    main()
