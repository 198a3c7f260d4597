# Mesh events against real klippy processes: delivery exactly once to each
# ready instance, context parameters, placeholders, config handlers,
# chains, instances that are down, restarts.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import time
import pytest
from harness import ApiError, Mesh, output_json, wait_until
from macros import MARK, REC, printing

MACROS = MARK + REC + printing('CFG') + printing('PONG_REC', 'PONG') + r"""

[gcode_macro CHAIN]
gcode:
  ROUTER_EVENT_TRIGGER EVENT=pong FROM={params.SOURCE}

[router event filament_loaded]
gcode:
  CFG
  CFG KIND=config LANE={lane}
"""

NAMES = ('main', 'led', 'afc')


def lines(node, prefix):
    return output_json(node, prefix)


@pytest.fixture(scope='module')
def trio(runtime):
    with Mesh(runtime).add_full_mesh(NAMES, MACROS).running() as m:
        yield m


def settle():
    time.sleep(.5)


def test_trigger_runs_each_handler_once_everywhere(trio):
    for name in NAMES:
        trio[name].gcode("ROUTER_EVENT_SUBSCRIBE EVENT=ace_feed GCODE=REC")
        # The same (EVENT, GCODE) again, with another case: still one
        trio[name].gcode("ROUTER_EVENT_SUBSCRIBE EVENT=ACE_Feed GCODE=rec")
    before = {n: len(lines(trio[n], 'REC')) for n in NAMES}
    trio['afc'].gcode("ROUTER_EVENT_TRIGGER EVENT=Ace_Feed LANE=2 LENGTH=950")
    for name in NAMES:
        wait_until(lambda: len(lines(trio[name], 'REC')) == before[name] + 1,
                   5.)
    settle()
    for name in NAMES:
        got = lines(trio[name], 'REC')
        assert len(got) == before[name] + 1
        assert got[-1] == {'LANE': '2', 'LENGTH': '950', 'EVENT': 'ace_feed',
                           'SOURCE': 'afc'}
    for name in NAMES:
        trio[name].gcode("ROUTER_EVENT_UNSUBSCRIBE EVENT=ace_feed")
    trio['main'].gcode("ROUTER_EVENT_TRIGGER EVENT=ace_feed LANE=3")
    settle()
    for name in NAMES:
        assert len(lines(trio[name], 'REC')) == before[name] + 1


def test_placeholders_context_and_hostile_values(trio):
    led, main = trio['led'], trio['main']
    led.gcode('ROUTER_EVENT_SUBSCRIBE EVENT=feed GCODE="REC LANE={lane}'
              ' NOTE=fixed"')
    n = len(lines(led, 'REC'))
    main.gcode('ROUTER_EVENT_TRIGGER EVENT=feed CONTEXT="lane=4,speed=20"')
    wait_until(lambda: len(lines(led, 'REC')) == n + 1, 5.)
    assert lines(led, 'REC')[-1] == {
        'LANE': '4', 'SPEED': '20', 'NOTE': 'fixed', 'EVENT': 'feed',
        'SOURCE': 'main'}
    # Hostile text through the API (no G-code line can hold a newline)
    hostile = 'x"\nM112\n; MARK VALUE=99 # *é'
    main.client.request('router/event/trigger', {
        'event': 'feed', 'context': {'lane': hostile}})
    wait_until(lambda: len(lines(led, 'REC')) == n + 2, 5.)
    # Newlines arrive as spaces (no extra line in the macro), the rest exact
    assert lines(led, 'REC')[-1] == {
        'LANE': hostile.replace('\n', ' '), 'NOTE': 'fixed',
        'EVENT': 'feed', 'SOURCE': 'main'}
    settle()
    assert led.macro_vars('MARK')['value'] == 0
    assert led.state() == 'ready'
    led.gcode("ROUTER_EVENT_UNSUBSCRIBE EVENT=feed")


def test_config_handlers_and_bad_input(trio):
    main = trio['main']
    n = {name: len(lines(trio[name], 'CFG')) for name in NAMES}
    main.gcode("ROUTER_EVENT_TRIGGER EVENT=filament_loaded LANE=1")
    for name in NAMES:
        wait_until(lambda: len(lines(trio[name], 'CFG')) == n[name] + 2, 5.)
    got = lines(trio['led'], 'CFG')[-2:]
    assert got == [{'LANE': '1', 'EVENT': 'filament_loaded',
                    'SOURCE': 'main'},
                   {'LANE': '1', 'KIND': 'config', 'EVENT': 'filament_loaded',
                    'SOURCE': 'main'}]
    # Config handlers stay; a missing placeholder is reported
    main.gcode("ROUTER_EVENT_UNSUBSCRIBE EVENT=filament_loaded")
    out = main.client
    main.gcode("ROUTER_EVENT_TRIGGER EVENT=filament_loaded")
    out.wait_output(lambda l: 'has no value for {lane}' in l)
    for bad, expect in [
            ("ROUTER_EVENT_TRIGGER", "missing EVENT"),
            ("ROUTER_EVENT_TRIGGER EVENT='a b'", "not a valid event"),
            ("ROUTER_EVENT_TRIGGER EVENT=x SOURCE=me", "cannot be a context"),
            ("ROUTER_EVENT_TRIGGER EVENT=x CONTEXT=novalue", "CONTEXT"),
            ("ROUTER_EVENT_SUBSCRIBE EVENT=x", "missing GCODE"),
            ("ROUTER_EVENT_SUBSCRIBE EVENT=x GCODE='REC BAD'", "KEY=VALUE"),
            ("ROUTER_EVENT_SUBSCRIBE EVENT=x GCODE='\"unbalanced'",
             "No closing quotation"),
            ("ROUTER_EVENT_SUBSCRIBE EVENT=" + "e" * 65 + " GCODE=REC",
             "not a valid event")]:
        with pytest.raises(ApiError) as e:
            main.gcode(bad)
        assert expect in str(e.value), (bad, str(e.value))
    for node in trio.nodes.values():
        assert node.state() == 'ready'


def test_event_chains_do_not_deadlock(trio):
    led, main = trio['led'], trio['main']
    led.gcode("ROUTER_EVENT_SUBSCRIBE EVENT=ping GCODE=CHAIN")
    for name in NAMES:
        trio[name].gcode("ROUTER_EVENT_SUBSCRIBE EVENT=pong GCODE=PONG_REC")
    n = {name: len(lines(trio[name], 'PONG')) for name in NAMES}
    main.gcode("ROUTER_EVENT_TRIGGER EVENT=ping")
    for name in NAMES:
        wait_until(lambda: len(lines(trio[name], 'PONG')) == n[name] + 1, 5.)
    assert lines(main, 'PONG')[-1] == {'FROM': 'main', 'EVENT': 'pong',
                                       'SOURCE': 'led'}
    settle()
    for name in NAMES:
        assert len(lines(trio[name], 'PONG')) == n[name] + 1
        trio[name].gcode("ROUTER_EVENT_UNSUBSCRIBE EVENT=pong")
    led.gcode("ROUTER_EVENT_UNSUBSCRIBE EVENT=ping")


def test_down_instances_are_skipped_and_reported_then_reached(mesh):
    mesh.add_full_mesh(NAMES, MACROS)
    mesh.start()
    mesh.wait_links()
    main, led = mesh['main'], mesh['led']
    out = main.client
    led.kill()
    # Until afc's card says its link to led is gone too, main sees led as
    # reachable through afc
    wait_until(lambda: main.router_status()['peers']['led']['reached']
               == 'not reached', 5.)
    main.gcode("ROUTER_EVENT_TRIGGER EVENT=filament_loaded LANE=5")
    line = out.wait_output(lambda l: "did not reach" in l)
    assert 'led (not connected (' in line and 'afc' not in line
    wait_until(lambda: len(lines(mesh['afc'], 'CFG')) == 2, 5.)
    # led comes back; RESTARTs of every instance; still exactly once
    led.start().wait_ready()
    mesh.wait_links()
    for name in NAMES:
        mesh[name].restart()
        mesh.wait_links()
    for node in mesh.nodes.values():
        node.client
    mesh['afc'].gcode("ROUTER_EVENT_TRIGGER EVENT=filament_loaded LANE=6")
    for name in NAMES:
        wait_until(lambda: len(lines(mesh[name], 'CFG')) == 2, 5.)
    settle()
    for name in NAMES:
        got = lines(mesh[name], 'CFG')
        assert len(got) == 2 and got[-1]['LANE'] == '6'
        assert got[-1]['SOURCE'] == 'afc'
