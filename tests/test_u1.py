# Snapmaker's U1 fork hands errors to an exception manager, which reports
# them to Moonraker and the printer's screen; its klippy.log says
# "Raising exception ..." for each one. Nothing a peer does may make a U1
# raise one: a refused or failed request, a failing handler or callback,
# a peer going away, a subscription to an unknown object, a dropped call.
# A G-code error that answers the command a user ran is one, as for any
# command. Only on the U1 fork (KLIPPER_PATH=<its checkout>, README).
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import signal, time
import pytest
from harness import ApiClient, ApiError, assert_clean_log, wait_until
from macros import COMMON
from test_served_once import PLAIN, Calls, served_by

RAISED = 'Raising exception'
# What the fork logs when it cannot raise one (an API request's error, in
# firmware 1.5.0): an endpoint of the module must not get there either
NOT_RAISED = 'Failed to raise exception'


@pytest.fixture(autouse=True)
def u1_only(runtime):
    if runtime.flavor != 'u1':
        pytest.skip("needs Snapmaker's U1 Klipper fork: KLIPPER_PATH=<its"
                    " checkout> KLIPPY_PYTHON=<its venv python> (README,"
                    " \"The Snapmaker U1's Klipper fork\")")


def raised(node):
    return [l for l in node.log_text().splitlines() if RAISED in l]


def assert_nothing_raised(node, own=()):
    """Nothing raised but the failures of commands its own user ran
    (texts in own): those are right to raise."""
    lines = [l for l in node.log_text().splitlines()
             if (RAISED in l or NOT_RAISED in l)
             and not any(text in l for text in own)]
    assert not lines, "%s:\n%s" % (node.name, '\n'.join(lines))


U1 = """
[router]
name: u1

[router peer]
socket: {peer}
on_connect: FAIL
on_disconnect: FAIL
on_update: FAIL
subscribe: gcode_macro MARK:value

# A listed instance that may only query here
[router limited]
socket: {limited}
allow: query

[router event boom]
gcode:
  FAIL

[gcode_macro ROUTER_ON_CONNECTED]
gcode:
  FAIL

[gcode_macro ROUTER_ON_DISCONNECTED]
gcode:
  FAIL
"""

PEER = """
[router]
name: peer

[router u1]
socket: {u1}
subscribe: no_such_object, gcode_macro MARK:value
"""

# (claimed name, method, params): each one refused or bad here
BAD_REQUESTS = [
    ('stranger', 'router/gcode', {'script': 'MARK VALUE=9'}),
    ('stranger', 'router/subscribe', {'objects': {'print_stats': None}}),
    ('stranger', 'router/event/deliver', {'event': 'boom',
                                          'source': 'stranger'}),
    ('stranger', 'router/mesh', {'kind': 'card'}),
    ('limited', 'router/gcode', {'script': 'MARK VALUE=9'}),
    ('limited', 'router/gcode', {}),
    ('limited', 'router/subscribe', {'objects': 'print_stats'}),
    ('limited', 'router/event/deliver', {'event': '', 'source': 'x'}),
    ('limited', 'router/gcode/script', {'target': 'nobody',
                                        'script': 'M118 x'}),
    (None, 'router/info', {'name': 12}),
]


def test_a_module_host_raises_nothing_for_its_peers(mesh):
    u1 = mesh.add('u1', COMMON + U1.format(peer=mesh.sock('peer'),
                                           limited=mesh.sock('limited')))
    peer = mesh.add('peer', COMMON + PEER.format(u1=mesh.sock('u1')))
    mesh.start()
    wait_until(lambda: u1.router_status()['peers']['peer']['ready']
               and peer.router_status()['peers']['u1']['ready'], 10.,
               what="u1 and peer linked")
    out = u1.client
    # Its hooks failed at the connection (reported in its log, maybe before
    # this client listened): on_connect, ROUTER_ON_CONNECTED
    for what in ("on_connect of peer 'peer'",
                 "hook ROUTER_ON_CONNECTED for peer 'peer'"):
        wait_until(lambda: "router: %s failed: Error evaluating 'gcode_macro"
                   " FAIL:gcode': gcode.CommandError: deliberate failure"
                   % (what,) in u1.log_text(), 5., what=what)
    # A failed request, not waited for: reported on the sender
    peer.gcode("ROUTER_GCODE_SCRIPT TARGET=u1 SCRIPT=FAIL")
    peer.client.wait_output(lambda l: l.startswith('// Router:')
                            and 'deliberate' in l)
    # A failing handler of the peer's event, a failing callback of its
    # object, a subscription to an object u1 does not have
    peer.gcode("ROUTER_EVENT_TRIGGER EVENT=boom")
    out.wait_output(lambda l: "event 'boom'" in l and 'deliberate' in l)
    peer.gcode("MARK VALUE=3")
    out.wait_output(lambda l: "callback FAIL of the subscription to 'peer'"
                    in l and 'deliberate' in l)
    # Refused here (the caller's error), after asking u1's objects
    with pytest.raises(ApiError) as e:
        peer.gcode("ROUTER_OBJECTS_SUBSCRIBE TARGET=u1"
                   " OBJECTS=no_such_thing CALLBACK=REC")
    assert "'u1' has no object no_such_thing" in str(e.value)
    peer.gcode("ROUTER_OBJECTS_QUERY TARGET=u1 OBJECTS=no_such_thing")
    # Requests refused or bad: each answered with an error
    for name, method, params in BAD_REQUESTS:
        with ApiClient(u1.sock) as c:
            if name is not None:
                c.request('router/info', {'name': name})
            with pytest.raises(ApiError):
                c.request(method, params)
    assert u1.macro_vars('MARK')['value'] != 9
    # A failed request waited for: the error answers the peer's user, and
    # on the peer (the U1 fork too) that command raises, as any does
    with pytest.raises(ApiError) as e:
        peer.gcode("ROUTER_GCODE_SCRIPT TARGET=u1 WAIT=1 SCRIPT=FAIL")
    assert 'deliberate failure' in str(e.value)
    wait_until(lambda: [l for l in raised(peer) if 'deliberate' in l], 5.,
               what="the peer's own command raised")
    # The peer goes away: on_disconnect, ROUTER_ON_DISCONNECTED fail
    peer.kill()
    out.wait_output(lambda l: 'on_disconnect' in l and 'deliberate' in l)
    out.wait_output(lambda l: 'ROUTER_ON_DISCONNECTED' in l
                    and 'deliberate' in l)
    time.sleep(.5)   # the fork raises from a timer: give it its turn
    assert_nothing_raised(u1)
    # Nor any '!!' there: what failed was reported as '// Router: ...'
    assert not [l for l in out.output if l.startswith('!!')], out.output
    assert u1.state() == 'ready'
    assert_clean_log(u1)
    # The check can fail: u1's user's own failing command raises
    with pytest.raises(ApiError):
        u1.gcode("ROUTER_GCODE_SCRIPT TARGET=nobody SCRIPT=M118")
    wait_until(lambda: [l for l in raised(u1) if 'nobody' in l], 5.,
               what="u1's own command raised")


def test_a_stock_main_raises_nothing_for_the_instances_serving_it(mesh):
    """A stock U1 main (no module) served by two instances: connections,
    a dropped call (its server stalled), a subscription to an object it
    does not have, an instance going away."""
    names = ('m1', 'm2')
    shared = mesh.add_shared_file(names, listed=('plain',))
    for name in names:
        mesh[name].write_config("[router]\nname: %s\n[include %s]\n%s"
                                % (name, shared, COMMON))
    plain = mesh.add('plain', PLAIN + COMMON)
    mesh.start()
    wait_until(lambda: len(served_by(mesh, names)) == 1, 10.,
               what="one server")
    server = served_by(mesh, names)[0]
    other = [n for n in names if n != server][0]
    calls = Calls(plain).start()
    time.sleep(1.)
    mesh[server].kill(signal.SIGSTOP)
    time.sleep(7.)
    mesh[server].kill(signal.SIGCONT)
    time.sleep(2.)
    calls.stop()
    ran, dropped, lost = calls.settle([mesh[n] for n in names])
    assert dropped and not lost
    for name in names:
        with pytest.raises(ApiError) as e:
            mesh[name].gcode("ROUTER_OBJECTS_SUBSCRIBE TARGET=plain"
                             " OBJECTS=no_such_thing CALLBACK=REC")
        assert "'plain' has no object no_such_thing" in str(e.value)
        mesh[name].gcode("ROUTER_OBJECTS_QUERY TARGET=plain"
                         " OBJECTS=no_such_thing")
    mesh[other].kill()
    time.sleep(1.)
    # Not even asked router/info, which it does not have
    assert "'router/info'" not in plain.log_text()
    # The subscription refused on the server is its user's own command
    for node in (plain, mesh[server]):
        assert_nothing_raised(node, own=(
            "ROUTER_OBJECTS_SUBSCRIBE: 'plain' has no object",))
        assert node.state() == 'ready'
    # The check can fail: G-code that fails on the stock main raises
    # there, as the same command from its own console does (the fork
    # raises every gcode/script request's failure)
    with pytest.raises(ApiError):
        mesh[server].gcode("ROUTER_GCODE_SCRIPT TARGET=plain WAIT=1"
                           " SCRIPT=FAIL")
    wait_until(lambda: raised(plain), 5., what="plain raised")
