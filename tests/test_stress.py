# Hostile conditions with real klippy processes: a crash loop, a hung
# peer, restart storms and a flood. CI runs short variants; the full ones
# (docs/RELIABILITY.md) with --full-reliability. Figures are printed at the
# end of the run ("router reliability figures").
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import random, signal, threading, time
import pytest
from harness import (ApiClient, ApiError, assert_clean_log as clean_log,
                     flood, wait_until)

pytestmark = pytest.mark.reliability

# RUN_ONCE reports each execution to main (which is never killed) with a
# WAIT=0 script: written to the led->main socket before led replies, so it
# survives a kill -9 that comes after the reply. (save_variables would not:
# it truncates its file before writing it.)
PEER_MACROS = r"""
[gcode_macro RUN_ONCE]
gcode:
  ROUTER_GCODE_SCRIPT TARGET=main SCRIPT="EXEC SEQ={{params.SEQ}}"

[gcode_macro MARK]
variable_value: 0
gcode:
  SET_GCODE_VARIABLE MACRO=MARK VARIABLE=value VALUE={{params.VALUE|int}}

[gcode_macro NOP]
gcode:
"""

HOST_MACROS = r"""
[lateness_probe]

[gcode_macro REC]
variable_n: 0
gcode:
  SET_GCODE_VARIABLE MACRO=REC VARIABLE=n VALUE={printer["gcode_macro REC"].n + 1}

[gcode_macro COUNT]
variable_n: 0
gcode:
  SET_GCODE_VARIABLE MACRO=COUNT VARIABLE=n VALUE={printer["gcode_macro COUNT"].n + 1}

[gcode_macro MARK]
variable_value: 0
gcode:
  SET_GCODE_VARIABLE MACRO=MARK VARIABLE=value VALUE={params.VALUE|int}

[gcode_macro NOP]
gcode:

[gcode_macro EXEC]
gcode:
  {action_respond_info("EXEC %s" % params.SEQ)}

[router event flood]
gcode: COUNT
"""


def started(mesh, subscribe=True):
    """main (with the lateness probe) and led, linked: (main, led)."""
    mesh.runtime.install_probe()
    sub = ("subscribe: gcode_macro MARK:value\non_update: REC\n"
           if subscribe else "")
    mesh.add_router_node('main', ['led'], HOST_MACROS, {'led': sub})
    led = mesh.add_router_node('led', ['main'], '')
    led.write_config(led_config(mesh))
    mesh.start()
    mesh.wait_links()
    return mesh['main'], led


def led_config(m):
    return ("\n[router]\nname: led\n\n[router main]\nsocket: %s\n"
            % (m.sock('main'),) + PEER_MACROS.format(dir=m['led'].dir))


def executions(main):
    """{seq: how many times led ran it}, from main's console."""
    done = {}
    for line in list(main.client.output):
        if line.startswith('// EXEC '):
            seq = int(line[8:])
            done[seq] = done.get(seq, 0) + 1
    return done


def test_crash_loop(mesh, full, figures):
    """kill -9 of the peer at random moments while WAIT=1 scripts, a
    subscription and events run: every acknowledged script ran exactly
    once, none ran twice, the host stays ready, the subscription comes back
    with one callback per change."""
    kills = 50 if full else 8
    main, led = started(mesh)
    main.client
    acked, failed = [], []
    stop = threading.Event()
    def traffic():
        client = ApiClient(main.sock)
        seq = 0
        while not stop.is_set():
            seq += 1
            try:
                client.request('gcode/script', {'script':
                    'ROUTER_GCODE_SCRIPT TARGET=led WAIT=1 TIMEOUT=2'
                    ' SCRIPT="RUN_ONCE SEQ=%d"\n'
                    'ROUTER_EVENT_TRIGGER EVENT=flood N=%d' % (seq, seq)},
                    timeout=10.)
                acked.append(seq)
            except ApiError:
                failed.append(seq)
                time.sleep(.02)
        client.close()
    t = threading.Thread(target=traffic)
    t.start()
    try:
        for i in range(kills):
            time.sleep(random.uniform(.1, .6))
            led.kill()
            assert main.state() == 'ready'
            led.start()
            led.wait_ready()
    finally:
        stop.set()
        t.join(30)
    mesh.wait_links()
    # The last reports queue behind main's own G-code
    try:
        wait_until(lambda: all(s in executions(main) for s in acked), 10.)
    except AssertionError:
        pass   # the assertion below says which
    time.sleep(.5)
    done = executions(main)
    assert all(done.get(seq) == 1 for seq in acked), \
        [(s, done.get(s)) for s in acked if done.get(s) != 1][:10]
    duplicated = [s for s, n in done.items() if n > 1]
    assert duplicated == []
    # The subscription is back, once
    n = main.macro_vars('REC')['n']
    led.gcode("MARK VALUE=%d" % (random.randint(1, 10 ** 6),))
    wait_until(lambda: main.macro_vars('REC')['n'] == n + 1, 5.)
    time.sleep(1.)
    assert main.macro_vars('REC')['n'] == n + 1
    assert main.state() == 'ready'
    clean_log(main)
    figures('crash loop', kills=kills, requests=len(acked) + len(failed),
            acknowledged=len(acked), executed=len(done),
            lost_acknowledged=sum(1 for s in acked if s not in done),
            duplicated=len(duplicated), failed_with_error=len(failed),
            shutdowns=0)


def test_hung_peer(mesh, full, figures):
    """SIGSTOP of the peer: WAIT=1 times out, the host runs its own G-code,
    its memory stays bounded by the send buffer limit, the link recovers
    after SIGCONT."""
    hang = 30. if full else 8.
    main, led = started(mesh, subscribe=False)
    rss0 = rss_kb(main.pid)
    main.client.request('lateness_probe/reset', {})
    led.kill(signal.SIGSTOP)
    t_stop = time.monotonic()
    try:
        with pytest.raises(ApiError) as e:
            main.gcode("ROUTER_GCODE_SCRIPT TARGET=led WAIT=1 TIMEOUT=1"
                       " SCRIPT=NOP")
        assert 'no reply within 1 s' in str(e.value)
        # Fill the link: 10 KB scripts until the limit refuses them
        junk = 'x' * 10000
        sent = refused = 0
        while time.monotonic() - t_stop < hang - 1.:
            try:
                main.gcode("ROUTER_GCODE_SCRIPT TARGET=led SCRIPT="
                           "'NOP X=%s'" % (junk,))
                sent += 1
            except ApiError as e:
                assert ('send buffer full' in str(e)
                        or 'not responding' in str(e)), str(e)
                refused += 1
                main.gcode("MARK VALUE=%d" % (refused,))
                assert main.macro_vars('MARK')['value'] == refused
                time.sleep(.2)
        rss1 = rss_kb(main.pid)
        assert main.state() == 'ready'
        assert refused > 0
        # 4 MiB of buffer plus slack for Python's allocator
        assert rss1 - rss0 < 12 * 1024, (rss0, rss1)
    finally:
        led.kill(signal.SIGCONT)
    t_cont = time.monotonic()
    wait_until(lambda: main.router_status()['peers']['led']['ready'], 30.)
    recovered = time.monotonic() - t_cont
    main.gcode("ROUTER_GCODE_SCRIPT TARGET=led WAIT=1 SCRIPT="
               "'MARK VALUE=5'")
    assert led.macro_vars('MARK')['value'] == 5
    late = main.query({'lateness_probe': None})['lateness_probe']
    clean_log(main)
    figures('hung peer', stopped_s=hang, scripts_queued=sent,
            refused_at_limit=refused, host_rss_growth_kb=rss1 - rss0,
            recovered_after_s=round(recovered, 2),
            host_lateness_max_ms=round(late['max'] * 1000, 2),
            shutdowns=0)


def rss_kb(pid):
    for line in open('/proc/%d/status' % (pid,)):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    return 0


def test_restart_storms(mesh, full, figures):
    """RESTART and FIRMWARE_RESTART of each side: no socket leak, one
    callback per change afterwards."""
    count = 50 if full else 6
    main, led = started(mesh)
    main.restart()
    mesh.wait_links()
    base = {n: mesh[n].fd_count('socket:') for n in ('main', 'led')}
    for i in range(count):
        for name in ('main', 'led'):
            mesh[name].restart(firmware=(i % 2 == 1))
            mesh.wait_links()
    for name in ('main', 'led'):
        wait_until(lambda: mesh[name].fd_count('socket:') == base[name], 5.,
                   what="%s sockets back to %d" % (name, base[name]))
    n = main.macro_vars('REC')['n']
    led.gcode("MARK VALUE=4242")
    wait_until(lambda: main.macro_vars('REC')['n'] == n + 1, 5.)
    time.sleep(1.)
    assert main.macro_vars('REC')['n'] == n + 1
    clean_log(main)
    clean_log(led)
    figures('restart storms', restarts_each_side=count,
            socket_fds_main='%d->%d' % (base['main'],
                                        main.fd_count('socket:')),
            socket_fds_led='%d->%d' % (base['led'],
                                       led.fd_count('socket:')),
            duplicate_callbacks=0, shutdowns=0)


FLOOD_PEER = r"""
[gcode_macro FLOOD_EV]
variable_n: 0
gcode:
  ROUTER_EVENT_TRIGGER EVENT=flood
  SET_GCODE_VARIABLE MACRO=FLOOD_EV VARIABLE=n VALUE={printer["gcode_macro FLOOD_EV"].n + 1}

[gcode_macro FLOOD_SC]
variable_n: 0
gcode:
  ROUTER_GCODE_SCRIPT TARGET=main SCRIPT=NOP
  SET_GCODE_VARIABLE MACRO=FLOOD_SC VARIABLE=n VALUE={printer["gcode_macro FLOOD_SC"].n + 1}
"""


def test_flood(mesh, full, figures):
    """8 peers trigger events and send scripts to the host at full speed;
    the host's reactor lateness is measured by a 5 ms timer inside it."""
    seconds = 30. if full else 8.
    mesh.runtime.install_probe()
    peers = ['p%d' % i for i in range(1, 9)]
    mesh.add_router_node('main', peers, HOST_MACROS)
    for p in peers:
        mesh.add_router_node(p, ['main'], FLOOD_PEER)
    mesh.start()
    mesh.wait_links()
    main = mesh['main']
    main.client.request('lateness_probe/reset', {})
    def still_ready():
        assert main.state() == 'ready'
    refused = flood(mesh, peers, 'FLOOD_EV\nFLOOD_SC\n' * 25, seconds,
                    still_ready)
    late = main.query({'lateness_probe': None})['lateness_probe']
    sent = sum(mesh[p].macro_vars('FLOOD_EV')['n'] for p in peers)
    scripts = sum(mesh[p].macro_vars('FLOOD_SC')['n'] for p in peers)
    wait_until(lambda: main.macro_vars('COUNT')['n'] > 0, 5.)
    time.sleep(2.)
    handled = main.macro_vars('COUNT')['n']
    assert 0 < handled <= sent
    assert main.state() == 'ready'
    clean_log(main)
    figures('flood', peers=8, seconds=seconds, events_sent=sent,
            events_handled_on_host=handled,
            events_dropped_at_full_queue=sent - handled,
            scripts_sent=scripts, batches_refused=refused,
            host_lateness_p99_ms=round(late['p99'] * 1000, 2),
            host_lateness_max_ms=round(late['max'] * 1000, 2),
            timer_samples=late['count'], shutdowns=0)
