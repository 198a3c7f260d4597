# The files of config_examples/ run on real klippy instances
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, re, time
import pytest
from harness import ApiError, ROOT, assert_clean_log, wait_until
from macros import COMMON

EXAMPLES = os.path.join(ROOT, 'config_examples')
SOCKETS = {'main': '~/printer_data/comms/klippy.sock',
           'led': '~/printer_led_data/comms/klippy.sock',
           'afc': '~/printer_afc_data/comms/klippy.sock',
           'chamber': '~/printer_chamber_data/comms/klippy.sock'}


def with_sockets(mesh, text):
    for name, path in SOCKETS.items():
        text = text.replace(path, mesh.sock(name))
    return text


def example(mesh, path):
    with open(os.path.join(EXAMPLES, path)) as f:
        return with_sockets(mesh, f.read())


def test_filament_unit_events(mesh):
    main = mesh.add('main', example(mesh, 'filament_unit_events/main.cfg'))
    afc = mesh.add('afc', example(mesh, 'filament_unit_events/afc.cfg'))
    mesh.start()
    mesh.wait_links()
    out_main, out_afc = main.client, afc.client
    main.gcode("LOAD_LANE LANE=2")
    out_afc.wait_output(lambda l: l == 'echo: feeding lane 2: 950 mm')
    out_main.wait_output(lambda l: l == 'echo: lane 2 loaded by afc')
    assert main.macro_vars('_ON_FEED_DONE')['last_lane'] == 2
    main.gcode("LOAD_LANE_AND_WAIT LANE=3 LENGTH=500")
    # WAIT=1: afc's macro has run when main's command returns
    assert 'echo: feeding lane 3: 500 mm' in out_afc.output
    out_main.wait_output(lambda l: l == 'echo: lane 3 is loaded')
    afc.kill()
    wait_until(lambda: not main.router_status()['peers']['afc']['ready'], 5.)
    with pytest.raises(ApiError) as e:
        main.gcode("LOAD_LANE LANE=1")
    assert 'Filament unit not ready: disconnected' in str(e.value)
    out_main.wait_output(lambda l: 'Filament unit lost' in l)


STAND_IN_CHAMBER = """
[router]
name: chamber

[router main]
socket: ~/printer_data/comms/klippy.sock

[gcode_macro SET_HEATER_TEMPERATURE]
variable_target: 0
gcode:
  SET_GCODE_VARIABLE MACRO=SET_HEATER_TEMPERATURE VARIABLE=target VALUE={params.TARGET|float}

[gcode_macro TEMPERATURE_WAIT]
variable_args: ''
gcode:
  SET_GCODE_VARIABLE MACRO=TEMPERATURE_WAIT VARIABLE=args VALUE="'{params.SENSOR}>={params.MINIMUM}'"
"""


def test_chamber_heater_main_side(mesh):
    main = mesh.add('main', example(mesh, 'chamber_heater/main.cfg'))
    chamber = mesh.add('chamber', with_sockets(mesh, STAND_IN_CHAMBER))
    mesh.start()
    mesh.wait_links()
    out = main.client
    main.gcode("CHAMBER_STATUS")
    out.wait_output(lambda l: l == 'echo: Chamber not seen yet (ready)')
    main.gcode("HEAT_CHAMBER TEMP=40")
    assert chamber.macro_vars('SET_HEATER_TEMPERATURE')['target'] == 40.
    assert chamber.macro_vars('TEMPERATURE_WAIT')['args'] == \
        'heater_generic chamber>=39.0'


def test_main_and_led_single_file(mesh):
    with open(os.path.join(EXAMPLES, 'main_and_led.cfg')) as f:
        text = f.read()
    main_part, led_part = text.split('#' * 28 + ' led printer.cfg')
    main = mesh.add('main', with_sockets(mesh, main_part))
    led = mesh.add('led', with_sockets(mesh, led_part.split('\n', 1)[1]))
    mesh.start('led')
    led.client
    mesh.start('main')
    mesh.wait_links()
    main.gcode("PRINT_START")
    # SET_LED is unknown here (no LED): Klipper only prints that, the
    # router makes it a failure (reported later for WAIT=0, an error for
    # PRINT_END's WAIT=1, which shows led's line first)
    led.client.wait_output(lambda l: 'SET_LED' in l)
    main.client.wait_output(lambda l: l == (
        "// Router: script on 'led' failed: Unknown command:\"SET_LED\""))
    with pytest.raises(ApiError) as e:
        main.gcode("PRINT_END")
    assert 'Unknown command:"SET_LED"' in str(e.value)
    main.client.wait_output(
        lambda l: l == '// [led] Unknown command:"SET_LED"')
    # The LED instance down: PRINT_START skips it and goes on
    led.kill()
    wait_until(lambda: not main.router_status()['peers']['led']['ready'], 5.)
    main.gcode("PRINT_START")
    main.client.wait_output(lambda l: l.startswith(
        "// ROUTER_GCODE_SCRIPT: script skipped, 'led' cannot take G-code"
        " now: not connected"))
    assert main.state() == 'ready'


def test_shared_mesh_file(mesh):
    """Three instances include one identical mesh file: every pair is
    linked both ways, and the file's allow: for led holds everywhere."""
    shared = os.path.join(mesh.workdir, 'mesh.cfg')
    with open(shared, 'w') as f:
        f.write(example(mesh, 'shared_mesh/mesh.cfg'))
    for name in ('main', 'led', 'afc'):
        text = example(mesh, 'shared_mesh/%s.cfg' % (name,))
        mesh.add(name, text.replace('[include mesh.cfg]',
                                    '[include %s]' % (shared,)) + COMMON)
    mesh.start()
    mesh.wait_links()
    for name in ('main', 'led', 'afc'):
        peers = mesh[name].router_status()['peers']
        assert sorted(peers) == sorted({'main', 'led', 'afc'} - {name})
        assert all(p['ready'] for p in peers.values())
    mesh['afc'].gcode("ROUTER_GCODE_SCRIPT TARGET=main WAIT=1"
                      " SCRIPT='MARK VALUE=4'")
    assert mesh['main'].macro_vars('MARK')['value'] == 4
    with pytest.raises(ApiError) as e:
        mesh['led'].gcode("ROUTER_GCODE_SCRIPT TARGET=afc SCRIPT='MARK'")
    assert "'afc' does not accept gcode from 'led'" in str(e.value)
    mesh['led'].gcode("ROUTER_OBJECTS_QUERY TARGET=main OBJECTS=print_stats")


def test_discovered_mesh(mesh):
    """config_examples/discovered_mesh: no [router NAME] section at all."""
    for name in ('main', 'led'):
        text = example(mesh, 'discovered_mesh/%s.cfg' % (name,))
        text = text.replace('~/printer_*_data/comms/klippy.sock',
                            os.path.join(mesh.workdir, '*', 'api.sock'))
        mesh.add(name, text + COMMON)
    mesh.start()
    mesh.wait_links()
    wait_until(lambda: all(
        mesh[n].router_status()['peers'].get(o, {}).get('ready')
        for n, o in (('main', 'led'), ('led', 'main'))), 5.)
    main, led = mesh['main'], mesh['led']
    assert led.router_status()['peers']['main']['known_by'] == 'discovered'
    out = led.client
    main.gcode("PRINT_STATE STATE=printing")
    out.wait_output(lambda l: l == 'echo: LED: main is printing')
    with pytest.raises(ApiError) as e:
        led.gcode("ROUTER_GCODE_SCRIPT TARGET=main SCRIPT=MARK")
    assert "'main' does not accept gcode from 'led'" in str(e.value)
    assert main.macro_vars('MARK')['count'] == 0


def stock_main_config(mesh):
    """config_examples/stock_main/main.cfg with the include file of
    config_examples/ itself (what a user copies next to printer.cfg)."""
    return example(mesh, 'stock_main/main.cfg').replace(
        '[include router_api.cfg]',
        '[include %s]' % (os.path.join(EXAMPLES, 'router_api.cfg'),))


def test_stock_main_served_by_its_filament_unit(mesh):
    """config_examples/stock_main: main runs no module and includes
    router_api.cfg; afc serves its ROUTER_* commands."""
    main = mesh.add('main', stock_main_config(mesh))
    afc = mesh.add('afc', example(mesh, 'stock_main/afc.cfg'))
    mesh.start()
    mesh.wait_links()
    assert main.router_status() == {}   # no module on main
    wait_until(lambda: afc.router_status()['peers']['main']['reached']
               == 'direct, served here', 10., what="afc serves main")
    out_main, out_afc = main.client, afc.client
    afc.gcode("ROUTER_PRINTERS_LIST")
    out_afc.wait_output(lambda l: re.search(
        r'^// main: ready for .*, no module; listed in this config; linked'
        r' directly, served here$',
        l, re.M))
    # G-code to afc: each call runs there once
    for lane in range(1, 6):
        main.gcode("LOAD_LANE LANE=%d" % (lane,))
    wait_until(lambda: afc.macro_vars('AFC_FEED')['fed'] == 5, 5.,
               what="5 feeds on afc")
    time.sleep(.5)
    assert afc.macro_vars('AFC_FEED')['fed'] == 5
    assert [l for l in out_afc.output if 'feeding lane' in l] == [
        'echo: AFC: feeding lane %d' % (n,) for n in range(1, 6)]
    # An event from main (CONTEXT parsed by the include file) reaches afc's
    # [router event] handler, whose event back runs the handler that main's
    # ROUTER_ON_READY installed with ROUTER_EVENT_SUBSCRIBE
    main.gcode("UNLOAD_LANE LANE=3")
    out_afc.wait_output(
        lambda l: l == 'echo: AFC: retracting lane 3 for main')
    out_main.wait_output(lambda l: l == 'echo: lane 3 retracted by afc')
    assert main.macro_vars('_ON_RETRACT_DONE')['last_lane'] == 3
    assert afc.macro_vars('AFC_RETRACT')['retracted'] == 1
    # CONTEXT with empty items and a value that is empty; KEY=VALUE too
    main.gcode('ROUTER_EVENT_TRIGGER EVENT=ace_retract'
               ' CONTEXT=",lane=4, note=," EXTRA=x')
    out_main.wait_output(lambda l: l == 'echo: lane 4 retracted by afc')
    with pytest.raises(ApiError) as e:
        main.gcode('ROUTER_EVENT_TRIGGER EVENT=ace_retract CONTEXT="lane"')
    assert "CONTEXT: 'lane' is not key=value" in str(e.value)
    with pytest.raises(ApiError) as e:
        main.gcode('ROUTER_GCODE_SCRIPT TARGET=afc WAIT=1 SCRIPT=AFC_FEED')
    assert 'WAIT=1 needs the router module' in str(e.value)
    # Lists and queries print through _ROUTER_API_SHOW on main
    main.gcode("ROUTER_PRINTERS_LIST")
    out_main.wait_output(lambda l: l.startswith('// PRINTERS: [')
                         and '"name":"afc"' in l)
    main.gcode("ROUTER_OBJECTS_QUERY TARGET=afc OBJECTS=print_stats:state,"
               "webhooks")
    out_main.wait_output(lambda l: l == '// PRINT_STATS_STATE: standby')
    out_main.wait_output(lambda l: l == '// WEBHOOKS_STATE: ready')
    main.gcode("ROUTER_OBJECTS_LIST TARGET=afc")
    out_main.wait_output(lambda l: l.startswith('// OBJECTS: ')
                         and 'router' in l.split(': ', 1)[1].split(','))
    # Subscribing: the first callback carries the full state, the next
    # one the change
    main.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=afc'
               ' OBJECTS="gcode_macro AFC_FEED:fed" CALLBACK=_ROUTER_API_SHOW')
    out_main.wait_output(lambda l: l == '// GCODE_MACRO_AFC_FEED_FED: 5')
    main.gcode("LOAD_LANE LANE=6")
    out_main.wait_output(lambda l: l == '// GCODE_MACRO_AFC_FEED_FED: 6')
    assert afc.macro_vars('AFC_FEED')['fed'] == 6
    assert not [l for l in list(out_main.output) + list(out_afc.output)
                if 'Router:' in l]
    assert_clean_log(afc)


def test_router_api_cfg_is_refused_with_the_module(mesh):
    """What router_api.cfg's header says: an instance with [router] that
    includes it does not start."""
    node = mesh.add('main', "[router]\nname: main\n[include %s]\n" % (
        os.path.join(EXAMPLES, 'router_api.cfg'),))
    node.start()
    node.wait_state('error')
    assert re.search(r'gcode command ROUTER_[A-Z_]+ already registered',
                     node.info()['state_message'])
