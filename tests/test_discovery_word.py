# Discovery keeps its word (issue #22, point 4): a socket that discover:
# matches is a peer only as an instance with the module. One that answers
# the probe as a module instance, then the link's handshake as a Klipper
# without it, is dropped and left alone: never served, its pushed calls
# never run. A real klippy is the instance under test; the fake socket is
# the attacker.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, threading, time
from fakepeer import FakePeer, Scenario, frame
from harness import wait_until
from macros import COMMON

LEFT_ALONE = ("left alone: it answered as a Klipper without the module")

# The G-code the attacker wants main to run: counts its runs
PWNED = """
[gcode_macro PWNED]
variable_n: 0
gcode:
  SET_GCODE_VARIABLE MACRO=PWNED VARIABLE=n VALUE={printer["gcode_macro PWNED"].n + 1}
"""

# What Klipper pushes for a remote method registered with the bridge's
# template ({'router': 'call', 'method': m}), its params added
CALL = {'router': 'call', 'method': 'router/gcode/script',
        'params': {'target': 'main', 'script': 'PWNED'}}

NO_MODULE = {'error': 'WebRequestError',
             'message': "No registered callback for path 'router/info'"}


def discovering(mesh, name, pattern):
    return ("[router]\nname: %s\ndiscover: %s\n%s%s" % (
        name, os.path.join(mesh.workdir, pattern, 'api.sock'), PWNED,
        COMMON))


class TwoFaced:
    """The attacker's script, on the one connection that the probe opens
    and main's peer takes over: router/info answered as a module instance
    of main's mesh, then as a Klipper without the module, and the call
    pushed at once and on every remote method main registers there."""
    def __init__(self):
        self.router_info = 0
        self.registered = []       # remote methods main registered here
        self.pushed = 0
        self.lock = threading.Lock()

    def scenario(self):
        return Scenario('two-faced', 'close',
                        hooks={'router/info': self.on_router_info,
                               'register_remote_method': self.on_register})

    def push(self, conn):
        with self.lock:
            self.pushed += 1
        return frame(CALL)

    def on_router_info(self, conn, msg):
        conn.hooks['router/info'] = self.on_router_info   # every time
        with self.lock:
            self.router_info += 1
            first = self.router_info == 1
        if first:   # the probe
            return conn.reply(msg, result={
                'name': 'evil', 'mesh': 'default', 'version': '0.3.0',
                'peers': [], 'allow': [], 'known': True})
        return conn.reply(msg, error=NO_MODULE) + self.push(conn)

    def on_register(self, conn, msg):
        conn.hooks['register_remote_method'] = self.on_register
        with self.lock:
            self.registered.append(
                (msg.get('params') or {}).get('remote_method'))
        return conn.reply(msg, result={}) + self.push(conn)


def assert_left_alone(main, attacker, fake, conns):
    """What the attack left: the pushed call never ran, nothing was
    registered there, one log line, the socket not dialed again, main
    ready."""
    assert attacker.pushed >= 1
    assert main.macro_vars('PWNED')['n'] == 0
    assert attacker.registered == []
    log = main.log_text()
    assert log.count(LEFT_ALONE) == 1, log[-3000:]
    assert 'Traceback' not in log
    assert len(fake.conns) == conns
    assert main.alive() and main.state() == 'ready'


def test_discovered_socket_that_turns_plain_is_left_alone(mesh):
    os.makedirs(os.path.join(mesh.workdir, 'evil'))
    fake = FakePeer(mesh.sock('evil'))
    attacker = TwoFaced()
    fake.arm(attacker.scenario())
    try:
        main = mesh.add('main', discovering(mesh, 'main', '*'))
        # An honest instance; it discovers main only (the fake counts
        # main's connections)
        mesh.add('led', discovering(mesh, 'led', 'main'))
        mesh.start()
        # The honest discovered instance still joins
        wait_until(lambda: main.router_status()['peers'].get('led', {})
                   .get('ready'), 10., what="led discovered and ready")
        assert main.router_status()['peers']['led']['known_by'] == \
            'discovered'
        # The attacker was probed, then its handshake said "no module"
        wait_until(lambda: attacker.router_info >= 2, 10.,
                   what="the handshake's router/info")
        # Long enough for an election (0.3 s), served calls and two
        # discovery scans (2 s) to have happened
        time.sleep(4.5)
        # Left alone: not dialed again while the socket file is the same
        assert_left_alone(main, attacker, fake, conns=1)
        status = main.router_status()
        assert sorted(status['peers']) == ['led']
        assert 'evil' not in status['instances']
        main.gcode("ROUTER_PRINTERS_LIST")
        text = main.client.wait_output(lambda l: "Router 'main'" in l, 5.)
        assert '1 peer(s)' in text and 'led:' in text, text
        assert 'evil' not in text, text
        # Its name is free: main still takes G-code and reaches led
        main.gcode("ROUTER_GCODE_SCRIPT TARGET=led WAIT=1 SCRIPT=MARK")
        assert mesh['led'].macro_vars('MARK')['count'] == 1
    finally:
        fake.stop()


def test_discovered_instance_that_comes_back_plain_is_left_alone(mesh):
    """At a later connect too: a discovered instance with the module
    whose socket answers the reconnect's handshake as a Klipper without
    it is dropped, not served."""
    os.makedirs(os.path.join(mesh.workdir, 'fake'))
    fake = FakePeer(mesh.sock('fake'))   # router/info: 'fake', the module
    attacker = TwoFaced()
    attacker.router_info = 1             # no probe on this connection
    try:
        main = mesh.add('main', discovering(mesh, 'main', '*'))
        mesh.start()
        wait_until(lambda: main.router_status()['peers'].get('fake', {})
                   .get('ready'), 10., what="fake discovered and ready")
        assert main.router_status()['peers']['fake']['module'] is True
        fake.arm(attacker.scenario())
        fake.kick()                      # main dials again
        wait_until(lambda: attacker.router_info >= 2, 10.,
                   what="the reconnect's router/info")
        time.sleep(4.5)
        assert_left_alone(main, attacker, fake, conns=2)
        assert main.router_status()['peers'] == {}
        main.gcode("ROUTER_PRINTERS_LIST")
        text = main.client.wait_output(lambda l: "Router 'main'" in l, 5.)
        assert '0 peer(s)' in text and 'fake' not in text, text
    finally:
        fake.stop()
