# ROUTER_GCODE_SCRIPT shows what the script prints on the peer, as it
# arrives, marked with the peer's name; an unknown command there fails
# it; IF_READY=1 skips a peer that cannot take G-code and lets the calling
# macro go on. On real klippy processes: a peer with the module (afc) and
# a Klipper without it (plain).
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import threading, time
import pytest
from harness import (ApiClient, ApiError, Mesh, assert_clean_log,
                     wait_until)
from macros import MARK, FAIL

# What the peers print
PEER_MACROS = MARK + FAIL + r"""
[real_dwell]

[gcode_macro MULTI]
gcode:
  RESPOND MSG=one
  RESPOND TYPE=command MSG=two
  {action_respond_info("three\nfour")}

[gcode_macro SLOW]
gcode:
  RESPOND MSG=first
  REAL_DWELL SECONDS=1.5
  RESPOND MSG=last

[gcode_macro OTHERS]
gcode:
  RESPOND MSG=others-start
  REAL_DWELL SECONDS=1
  RESPOND MSG=others-end

[gcode_macro CTRL]
gcode:
  {action_respond_info("a\rb\x85c\u2028d\x1b[2Je\nM112")}

[gcode_macro MANY]
gcode:
  {% for i in range(150) %}
  RESPOND MSG=line{i}
  {% endfor %}
  {action_respond_info("x" * 1000)}

[gcode_macro INNER_UNKNOWN]
gcode:
  NO_SUCH_INNER
  MARK VALUE=5
"""

# The calling macros on main: does the line after the call run?
MAIN_MACROS = MARK + r"""
[gcode_macro CALL_THEN_MARK]
gcode:
  ROUTER_GCODE_SCRIPT TARGET={params.TARGET} {params.ARGS|default('')} SCRIPT="{params.SCRIPT|default('M118')}"
  MARK VALUE={params.VALUE}
"""

PEERS = ('afc', 'plain')


def build_trio(mesh):
    mesh.runtime.install_test_module('real_dwell')
    mesh.add_router_node('main', ['afc', 'plain'], MAIN_MACROS)
    mesh.add_router_node('afc', ['main'], PEER_MACROS)
    mesh.add('plain', PEER_MACROS)
    return mesh


@pytest.fixture(scope='module')
def trio(runtime):
    m = build_trio(Mesh(runtime))
    with m.running():
        yield m


def console_since(node, n):
    return list(node.client.output[n:])


def shown(node, n, peer):
    """main's console lines from n on that come from peer."""
    mark = '// [%s] ' % (peer,)
    return [l[len(mark):] for l in console_since(node, n)
            if l.startswith(mark)]


def script(target, text, wait=1, extra=''):
    return ("ROUTER_GCODE_SCRIPT TARGET=%s WAIT=%d %s SCRIPT=\"%s\""
            % (target, wait, extra, text))


@pytest.mark.parametrize('peer', PEERS)
def test_peer_output_shows_on_the_callers_console(trio, peer):
    main = trio['main']
    n = len(main.client.output)
    main.gcode(script(peer, 'M118 hi'))
    main.gcode(script(peer, 'STATUS'))
    main.gcode(script(peer, 'MULTI'))
    # The lines arrived before the reply (same connection, in order;
    # Klipper prints action_respond_info as it renders the macro, before
    # running its commands); one console line each, nothing around them
    assert console_since(main, n) == ['// [%s] %s' % (peer, l) for l in (
        'echo: hi', 'Klipper state: Ready',
        'three', 'four', 'echo: one', 'two')]


@pytest.mark.parametrize('peer', PEERS)
def test_output_arrives_while_the_script_runs(trio, peer):
    main = trio['main']
    n = len(main.client.output)
    t0 = time.monotonic()
    done = {}
    def call():
        main.gcode(script(peer, 'SLOW'))
        done['at'] = time.monotonic() - t0
    t = threading.Thread(target=call)
    t.start()
    main.client.wait_output(lambda l: l == '// [%s] echo: first' % (peer,),
                            5.)
    first_at = time.monotonic() - t0
    assert 'at' not in done and first_at < 1.2, first_at
    t.join(10)
    assert done['at'] >= 1.5, done
    assert shown(main, n, peer) == ['echo: first', 'echo: last']


@pytest.mark.parametrize('peer', PEERS)
def test_unknown_command_fails_a_waiting_call(trio, peer):
    main = trio['main']
    before = main.macro_vars('MARK')['value']
    with pytest.raises(ApiError) as e:
        main.gcode('CALL_THEN_MARK TARGET=%s ARGS=WAIT=1 SCRIPT=NO_SUCH_CMD'
                   ' VALUE=%d' % (peer, before + 1))
    assert ("ROUTER_GCODE_SCRIPT on '%s' failed: Unknown command:"
            '"NO_SUCH_CMD"' % (peer,)) in str(e.value)
    # The '!!' stopped the calling macro
    assert main.macro_vars('MARK')['value'] == before
    # Known commands still pass
    main.gcode(script(peer, 'M118 fine'))


@pytest.mark.parametrize('peer', PEERS)
def test_peers_error_line_shows_as_information(trio, peer):
    """The peer's own '!!' line is shown behind '// [peer] ': the one
    '!!' here is this command's answer."""
    main = trio['main']
    n = len(main.client.output)
    with pytest.raises(ApiError) as e:
        main.gcode(script(peer, 'FAIL'))
    assert 'deliberate failure' in str(e.value)
    got = console_since(main, n)
    assert got[-1].startswith("!! ROUTER_GCODE_SCRIPT on '%s' failed: "
                              % (peer,)), got
    assert got[:-1] and all(l.startswith('// [%s] ' % (peer,))
                            for l in got[:-1]), got
    assert [l for l in got if l.startswith('// [%s] !! ' % (peer,))
            and 'deliberate failure' in l], got


def test_unknown_command_deep_in_a_peers_macro_fails_after_it_ran(trio):
    main, afc = trio['main'], trio['afc']
    with pytest.raises(ApiError) as e:
        main.gcode(script('afc', 'INNER_UNKNOWN'))
    assert 'Unknown command:"NO_SUCH_INNER"' in str(e.value)
    # Klipper went on with the macro there, as it does
    assert afc.macro_vars('MARK')['value'] == 5


@pytest.mark.parametrize('peer', PEERS)
def test_unknown_command_without_wait_is_reported(trio, peer):
    main = trio['main']
    n = len(main.client.output)
    main.gcode(script(peer, 'NO_SUCH_CMD', wait=0))
    line = main.client.wait_output(
        lambda l: l.startswith("// Router: script on '%s' failed" % (peer,)),
        5.)
    assert line.endswith('failed: Unknown command:"NO_SUCH_CMD"'), line
    assert not [l for l in console_since(main, n) if l.startswith('!!')]
    assert 'NO_SUCH_CMD' in main.router_status()['peers'][peer][
        'last_failure']


def test_module_peer_shows_only_what_the_script_printed(trio):
    main, afc = trio['main'], trio['afc']
    n = len(main.client.output)
    afc.gcode("RESPOND MSG=before")
    # afc's own client holds its G-code queue; main's script waits for
    # it there, and what afc prints meanwhile is not main's
    m = len(afc.client.output)
    other = threading.Thread(target=lambda: afc.gcode("OTHERS"))
    other.start()
    afc.client.wait_output(lambda l: l == 'echo: others-start', 5.)
    main.gcode(script('afc', 'M118 mine'))
    other.join(10)
    assert afc.client.output[m:].index('echo: others-end') < \
        afc.client.output[m:].index('echo: mine')
    afc.gcode("RESPOND MSG=after")
    time.sleep(.5)
    assert shown(main, n, 'afc') == ['echo: mine']


@pytest.mark.parametrize('peer', PEERS)
def test_control_characters_cannot_start_a_line_here(trio, peer):
    main = trio['main']
    n = len(main.client.output)
    main.gcode(script(peer, 'CTRL'))
    # Klipper split its own message at the newline ('// ' on each);
    # every other control character is a space here
    got = console_since(main, n)
    assert got == ['// [%s] a b c d [2Je' % (peer,),
                   '// [%s] M112' % (peer,)], got
    assert main.state() == 'ready'


@pytest.mark.parametrize('peer', PEERS)
def test_output_of_one_call_is_bounded(trio, peer):
    main = trio['main']
    n = len(main.client.output)
    main.gcode(script(peer, 'MANY'))
    got = shown(main, n, peer)
    # The long line (printed as the macro renders) is cut; 100 lines in
    # all, then one saying there was more
    assert got == ['x' * 297 + '...'] + [
        'echo: line%d' % (i,) for i in range(99)] + [
        '... more output not shown (at most 100 lines per call)'], got


def test_nothing_shows_without_wait(trio):
    main = trio['main']
    n = len(main.client.output)
    for peer in PEERS:
        main.gcode(script(peer, 'M118 quiet', wait=0))
    time.sleep(.5)
    assert console_since(main, n) == []
    for node in trio.nodes.values():
        assert_clean_log(node)


def test_router_gcode_for_older_and_newer_callers(trio):
    """router/gcode as a router of 0.3 called it (no output asked: no
    push, and an unknown command is now an error) and as this version
    does (output: a call number, each message pushed with it)."""
    afc = trio['afc']
    with ApiClient(afc.sock) as caller:
        caller.request('router/info', {'name': 'main'})
        assert caller.request('router/gcode', {'script': 'M118 old'}) == {}
        with pytest.raises(ApiError) as e:
            caller.request('router/gcode', {'script': 'NO_SUCH_CMD'})
        assert str(e.value) == 'Unknown command:"NO_SUCH_CMD"'
        assert caller.request('router/gcode', {'script': 'MULTI',
                                               'output': 7}) == {}
        for bad in ('7', True, 1.5, [7], {}):
            with pytest.raises(ApiError) as e:
                caller.request('router/gcode', {'script': 'M118 x',
                                                'output': bad})
            assert 'output must be an integer' in str(e.value)
        time.sleep(.3)
        assert caller.pushes == [
            {'router': 'output', 'params': {'call': 7, 'response': r}}
            for r in ('// three\n// four', 'echo: one', '// two')]


# IF_READY=1: a peer that cannot take G-code is skipped, the macro goes on
IF_READY_PEER = MARK + FAIL


def test_if_ready_skips_a_peer_that_cannot_take_gcode(mesh):
    mesh.add_router_node('main', ['led', 'afc'], MAIN_MACROS)
    mesh.add_router_node('led', ['main'], IF_READY_PEER)
    # afc lets main query it, not run G-code
    mesh.add_router_node('afc', ['main'], IF_READY_PEER,
                         {'main': 'allow: query\n'})
    mesh.start()
    mesh.wait_links()
    main, led = mesh['main'], mesh['led']
    # Ready: IF_READY changes nothing; a script that was sent and fails
    # is still an error when waited for
    main.gcode("CALL_THEN_MARK TARGET=led ARGS=IF_READY=1"
               " SCRIPT='MARK VALUE=7' VALUE=1")
    wait_until(lambda: led.macro_vars('MARK')['value'] == 7, 5.)
    with pytest.raises(ApiError) as e:
        main.gcode("CALL_THEN_MARK TARGET=led ARGS='WAIT=1 IF_READY=1'"
                   " SCRIPT=FAIL VALUE=2")
    assert 'deliberate failure' in str(e.value)
    assert main.macro_vars('MARK')['value'] == 1
    # Refused by the peer's allow:
    n = len(main.client.output)
    main.gcode("CALL_THEN_MARK TARGET=afc ARGS=IF_READY=1 VALUE=3")
    assert main.macro_vars('MARK')['value'] == 3
    line = main.client.wait_output(lambda l: 'script skipped' in l, 5.)
    assert line.startswith("// ROUTER_GCODE_SCRIPT: script skipped, 'afc'"
                           " does not accept gcode from 'main': its"
                           " [router main] allow: does not include gcode"
                           ), line
    # Killed: down, not connected
    led.kill()
    wait_until(lambda: not main.router_status()['peers']['led']['ready'],
               5.)
    for value, args in ((4, 'IF_READY=1'), (5, "'WAIT=1 IF_READY=1'")):
        main.gcode("CALL_THEN_MARK TARGET=led ARGS=%s VALUE=%d"
                   % (args, value))
        assert main.macro_vars('MARK')['value'] == value
    skipped = [l for l in console_since(main, n) if 'script skipped' in l]
    assert len(skipped) == 3 and all("'led' cannot take G-code now: not"
                                     " connected" in l
                                     for l in skipped[1:]), skipped
    assert not [l for l in console_since(main, n) if l.startswith('!!')]
    # Without IF_READY the call is still an error that stops the macro
    for args in ('WAIT=0', 'WAIT=1'):
        with pytest.raises(ApiError) as e:
            main.gcode("CALL_THEN_MARK TARGET=led ARGS=%s VALUE=6" % (args,))
        assert "peer 'led' cannot take G-code now" in str(e.value)
        assert main.macro_vars('MARK')['value'] == 5
    assert main.state() == 'ready'
    assert_clean_log(main)
