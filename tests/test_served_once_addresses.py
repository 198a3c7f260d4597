# One Klipper without the module, reached by two instances at two
# addresses, is one Klipper: exactly one of them serves it, and each of its
# calls runs once (issue #22, point 2). Real klippy processes and a real
# Moonraker on 127.0.0.1 in front of the plain Klipper.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import time
import pytest
from harness import Moonraker, assert_clean_log, peer_section, wait_until
from macros import COMMON

pytestmark = pytest.mark.skipif(
    not Moonraker.available(),
    reason="moonraker not installed (scripts/setup-venv.sh installs it when"
           " there is a Python 3.10 or newer, which Moonraker 0.11 needs)")

# plain has no [router]: CALL_MARK reaches whichever instance registered
# the router/* remote methods on its API connections, which runs MARK back
# on plain; MARK counts its runs
PLAIN = """
[gcode_macro CALL_MARK]
gcode:
  {action_call_remote_method("router/gcode/script", target="plain",
                             script="MARK")}
"""

CALLS = 20
SETTLE = 6.     # s after the links: lease.START is 2.25 s


def url_section(url):
    return "\n[router plain]\nurl: %s\n" % (url,)


def reached(node):
    return node.router_status()['peers']['plain']['reached']


def servers(mesh):
    return [n for n in ('m1', 'm2') if reached(mesh[n]) ==
            'direct, served here']


def run_calls_once(mesh, plain_m1, plain_m2):
    """m1 and m2 list each other by socket, and plain by the sections
    given (one Klipper at two addresses). Once settled, CALLS calls from
    plain run MARK exactly CALLS times, and exactly one instance serves."""
    plain = mesh.add('plain', PLAIN + COMMON)
    mr = Moonraker(plain, host='127.0.0.1', trusted='127.0.0.1')
    port = mr.port
    def section(text):
        return text.replace('PORT', str(port))
    mesh.add('m1', "[router]\nname: m1\n" + peer_section(
        'm2', mesh.sock('m2')) + section(plain_m1))
    mesh.add('m2', "[router]\nname: m2\n" + peer_section(
        'm1', mesh.sock('m1')) + section(plain_m2))
    try:
        mesh.start('plain')
        mr.start()
        mesh.start('m1', 'm2')
        mesh.wait_links(15.)
        linked = time.monotonic()
        wait_until(lambda: servers(mesh), 10., what="a server of plain")
        time.sleep(max(0., linked + SETTLE - time.monotonic()))
        for i in range(CALLS):
            plain.gcode("CALL_MARK")
        count = lambda: plain.macro_vars('MARK')['count']
        wait_until(lambda: count() >= CALLS, 10., what="%d runs" % (CALLS,))
        time.sleep(1.)
        ran = count()
        served = servers(mesh)
        assert (ran, len(served)) == (CALLS, 1), (
            "%d calls ran %d times; served by %s" % (CALLS, ran, served))
        other = 'm2' if served == ['m1'] else 'm1'
        assert reached(mesh[other]) == 'direct, served by %s' % (
            served[0],)
        for name in ('m1', 'm2'):
            assert_clean_log(mesh[name])
    finally:
        mr.stop()


def test_one_klipper_by_its_socket_and_its_moonraker(mesh):
    run_calls_once(
        mesh, peer_section('plain', mesh.sock('plain')),
        url_section('ws://127.0.0.1:PORT/klippysocket'))


def test_one_moonraker_by_two_spellings_of_its_url(mesh):
    run_calls_once(
        mesh, url_section('ws://localhost:PORT/klippysocket'),
        url_section('ws://127.0.0.1:PORT/klippysocket'))
