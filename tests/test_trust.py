# The trust model from the attacker's side, on real klippy processes: a
# peer's macros, a served Klipper without the module, an API client that
# lies about its name, an instance this config does not list, values
# planted in another printer's objects. docs/SECURITY.md names each test.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import json, os, time
import pytest
from harness import (ApiClient, ApiError, Mesh, assert_clean_log,
                     output_json, wait_until)
from macros import MARK, REC
from fakepeer import FakePeer

# PWN.v becomes 666 only if an attack worked
COMMON = MARK + REC + r"""

[gcode_macro PWN]
variable_v: 0
gcode:

[gcode_macro SHOW]
gcode:
  M118 got {params.GCODE_MACRO_STATE_LAST}
"""

PWN = "SET_GCODE_VARIABLE MACRO=PWN VARIABLE=v VALUE=666"

# Values planted in main's objects: a real newline, and backslash + n
MAIN = r"""
[gcode_macro STATE]
variable_last: 'x\nSET_GCODE_VARIABLE MACRO=PWN VARIABLE=v VALUE=666'
variable_escaped: 'a\\nSET_GCODE_VARIABLE MACRO=PWN VARIABLE=v VALUE=666'
gcode:

[gcode_macro SEND_ESCAPED]
gcode:
  ROUTER_GCODE_SCRIPT TARGET=led WAIT=1 SCRIPT="M118 {printer['gcode_macro STATE'].escaped}"

[gcode_macro SHOW_LANE]
gcode:
  M118 lane {params.LANE}

[router event lane_loaded]
gcode: SHOW_LANE
"""

# led: main lets it read, follow and fire events, not run G-code
LED = r"""
[gcode_macro SUB_ON_MAIN]
gcode:
  {action_call_remote_method("router/event/subscribe", event=params.EVENT, gcode="MARK VALUE=" ~ params.VALUE, callback_target="main", callback_type=params.TYPE|default("gcode"))}
"""

# A Klipper without the module, served by main: old-bridge macros
PLAIN = r"""
[gcode_macro CALL_SCRIPT]
gcode:
  {action_call_remote_method("router/gcode/script", target=params.TARGET, script="MARK VALUE=666")}

[gcode_macro CALL_QUERY]
gcode:
  {action_call_remote_method("router/objects/query", target="main", objects={"gcode_macro MARK": ["value"]}, gcode_callback="REC")}

[gcode_macro CALL_EVENT_SUB]
gcode:
  {action_call_remote_method("router/event/subscribe", event="plainboom", gcode="MARK VALUE=666", callback_target=params.TARGET)}

[gcode_macro CALL_TRIGGER]
gcode:
  {action_call_remote_method("router/event/trigger", event="plainboom")}
"""

LIMITED = "allow: query, subscribe, events\n"


@pytest.fixture(scope='module')
def world(runtime):
    m = Mesh(runtime)
    m.add_router_node('main', ['led', 'afc', 'plain'], COMMON + MAIN, {
        'led': LIMITED, 'plain': LIMITED})
    m.add_router_node('led', ['main'], COMMON + LED)
    # afc lets main read only: what main is asked to do there meets that
    m.add_router_node('afc', ['main'], COMMON + LED, {'main': LIMITED})
    m.add('plain', COMMON + PLAIN)
    # stranger runs the module and dials main, which does not list it
    m.add_router_node('stranger', ['main'], COMMON)
    m.one_sided.add(('stranger', 'main'))
    with m.running():
        yield m


def report_on(node, *words):
    """Waits for an informational router report holding every word."""
    return node.client.wait_output(
        lambda l: l.startswith('// Router:') and all(w in l for w in words),
        5.)


def untouched(*nodes):
    time.sleep(.5)
    for node in nodes:
        assert node.macro_vars('PWN')['v'] == 0, node.name
        assert node.macro_vars('MARK')['value'] != 666, node.name
        assert node.state() == 'ready', node.name


def fake_pair(mesh):
    """main dialing a fake peer 'fake' that runs the module."""
    main = mesh.add('main', "\n[router]\nname: main\n\n[router fake]\n"
                    "socket: %s\n" % (mesh.sock('fake'),) + COMMON)
    os.makedirs(os.path.dirname(mesh.sock('fake')), exist_ok=True)
    fake = FakePeer(mesh.sock('fake'))
    try:
        mesh.start()
        wait_until(lambda: main.router_status()['peers']['fake']['ready'],
                   10.)
    except Exception:
        fake.stop()
        raise
    return main, fake


# 1. Text from another instance never becomes a line of G-code here

def test_followed_value_with_newline_stays_one_parameter(world):
    main, led = world['main'], world['led']
    led.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=main OBJECTS="gcode_macro'
              ' STATE:last" CALLBACK=SHOW')
    led.client.wait_output(
        lambda l: l == 'echo: got x ' + PWN, 5.)
    # The mirror keeps the exact value
    assert led.router_status()['peers']['main']['objects'][
        'gcode_macro STATE']['last'] == 'x\n' + PWN
    led.gcode('ROUTER_OBJECTS_UNSUBSCRIBE TARGET=main CALLBACK=SHOW')
    untouched(led, main)


def test_event_context_with_newline_stays_one_parameter(world):
    main, led = world['main'], world['led']
    with ApiClient(led.sock) as api:
        api.request('router/event/trigger', {
            'event': 'lane_loaded', 'context': {'lane': '1\nM112\n' + PWN}})
    main.client.wait_output(lambda l: l == 'echo: lane 1 M112 ' + PWN, 5.)
    untouched(main, led)


def test_shipped_filament_handler_with_hostile_lane(mesh):
    # config_examples/filament_unit_events/main.cfg as shipped: its handler
    # writes {params.LANE} into M118; afc's context tries an M112
    from test_examples import example
    main = mesh.add('main', example(mesh, 'filament_unit_events/main.cfg'))
    afc = mesh.add('afc', example(mesh, 'filament_unit_events/afc.cfg'))
    mesh.start()
    mesh.wait_links()
    with ApiClient(afc.sock) as api:
        api.request('router/event/trigger', {
            'event': 'ace_feed_done', 'context': {'lane': '1\nM112'}})
    main.client.wait_output(lambda l: l == 'echo: lane 1 M112 loaded by afc')
    time.sleep(.3)
    assert main.state() == 'ready' and afc.state() == 'ready'


def test_interpolated_backslash_n_is_not_a_second_command(world):
    main, led = world['main'], world['led']
    main.gcode('SEND_ESCAPED')
    led.client.wait_output(lambda l: l == 'echo: a\\n' + PWN, 5.)
    untouched(led, main)


def test_script_with_a_control_character_is_refused(world):
    main = world['main']
    with pytest.raises(ApiError) as e:
        main.gcode('ROUTER_GCODE_SCRIPT TARGET=led SCRIPT="M118 a\x01b"')
    assert 'one command per ROUTER_GCODE_SCRIPT' in str(e.value)


# 2. allow: is enforced where the request arrives, on every path

def test_peer_cannot_install_a_handler_that_runs_gcode_here(world):
    main, led, afc = world['main'], world['led'], world['afc']
    for kind in ('gcode', 'webhook'):
        led.gcode('SUB_ON_MAIN EVENT=boom VALUE=666 TYPE=%s' % (kind,))
        report_on(led, 'router/event/subscribe', "'main' does not accept"
                  " gcode from 'led'")
    led.gcode('ROUTER_EVENT_TRIGGER EVENT=boom')
    untouched(main)
    # The same call from afc, which main lets run G-code, works: the
    # refusal above is the permission, not a broken path
    afc.gcode('SUB_ON_MAIN EVENT=allowed VALUE=5')
    time.sleep(.3)
    afc.gcode('ROUTER_EVENT_TRIGGER EVENT=allowed')
    wait_until(lambda: main.macro_vars('MARK')['value'] == 5, 5.)
    main.gcode('ROUTER_EVENT_UNSUBSCRIBE EVENT=allowed')
    main.gcode('MARK VALUE=0')


def test_peer_script_refused_by_allow(world):
    main, led = world['main'], world['led']
    with pytest.raises(ApiError) as e:
        led.gcode("ROUTER_GCODE_SCRIPT TARGET=main WAIT=1 SCRIPT='%s'"
                  % (PWN,))
    assert "'main' does not accept gcode from 'led'" in str(e.value)
    untouched(main)


def test_served_klipper_gets_only_what_its_section_allows(world):
    main, afc, plain = world['main'], world['afc'], world['plain']
    for target in ('main', 'afc'):
        plain.gcode('CALL_SCRIPT TARGET=%s' % (target,))
        report_on(main, "router/gcode/script from 'plain'",
                  "'main' does not accept gcode from 'plain'")
    plain.gcode('CALL_EVENT_SUB TARGET=main')
    report_on(main, "router/event/subscribe from 'plain'",
              "does not accept gcode from 'plain'")
    plain.gcode('CALL_TRIGGER')
    untouched(main, afc, plain)
    # What it is allowed works: a query, its callback on plain itself
    plain.gcode('CALL_QUERY')
    wait_until(lambda: any(r.get('PRINTER') == 'main' for r in output_json(
        plain, 'REC')), 5.)
    # and a handler on itself needs no G-code permission on main
    plain.gcode('CALL_EVENT_SUB TARGET=plain')
    plain.gcode('CALL_TRIGGER')
    wait_until(lambda: plain.macro_vars('MARK')['value'] == 666, 5.)
    plain.gcode('MARK VALUE=0')


def test_unlisted_instance_gets_nothing(world):
    main, stranger = world['main'], world['stranger']
    fix = "add [router stranger] to main's config"
    for line in ("ROUTER_GCODE_SCRIPT TARGET=main SCRIPT='%s'" % (PWN,),
                 "ROUTER_OBJECTS_QUERY TARGET=main OBJECTS=print_stats",
                 "ROUTER_OBJECTS_SUBSCRIBE TARGET=main OBJECTS=print_stats"):
        with pytest.raises(ApiError) as e:
            stranger.gcode(line)
        assert fix in str(e.value)
    stranger.gcode('ROUTER_EVENT_TRIGGER EVENT=lane_loaded LANE=9')
    # Enforced by main itself, whatever the stranger's router decides
    with ApiClient(main.sock) as raw:
        assert raw.request('router/info', {'name': 'stranger'})[
            'allow'] == []
        for method, params in [
                ('router/gcode', {'script': PWN}),
                ('router/gcode/script', {'target': 'main', 'script': PWN}),
                ('router/event/deliver', {'event': 'lane_loaded',
                                          'context': {'lane': 9},
                                          'source': 'stranger'}),
                ('router/mesh', {'kind': 'event', 'origin': 'stranger',
                                 'id': '1', 'hops': 0, 'skip': [],
                                 'event': 'lane_loaded',
                                 'context': {'lane': 9}}),
                ('router/mesh/link', {}),
                ('router/event/subscribe', {'event': 'x', 'gcode': PWN}),
                ('router/objects/query', {'target': 'main',
                                          'objects': {'print_stats': None}}),
                ('router/printers/list', {})]:
            with pytest.raises(ApiError) as e:
                raw.request(method, params)
            assert fix in str(e.value), method
    time.sleep(.3)
    assert not [l for l in main.client.output if 'lane 9' in l]
    untouched(main)


def test_client_that_lies_about_its_name_gains_nothing(world):
    main, led, afc = world['main'], world['led'], world['afc']
    # Claiming to be led gives led's rights, which exclude G-code
    with ApiClient(main.sock) as raw:
        assert raw.request('router/info', {'name': 'LED'})['allow'] == [
            'events', 'query', 'subscribe']
        for method, params in [
                ('router/gcode', {'script': PWN}),
                ('router/gcode/script', {'target': 'afc', 'script': PWN}),
                ('router/event/subscribe', {'event': 'x', 'gcode': PWN}),
                ('router/objects/subscribe', {
                    'target': 'afc', 'objects': {'print_stats': None},
                    'gcode_callback': 'PWN'})]:
            with pytest.raises(ApiError) as e:
                raw.request(method, params)
            assert "'main' does not accept gcode from 'led'" in str(
                e.value), method
    # A client that names no instance has main's own authority, and what
    # it asks of another instance arrives there as main
    with ApiClient(main.sock) as raw:
        with pytest.raises(ApiError) as e:
            raw.request('router/gcode/script', {'target': 'afc',
                                                'script': PWN})
        assert "'afc' does not accept gcode from 'main'" in str(e.value)
        raw.request('router/gcode/script', {'target': 'led',
                                            'script': 'MARK VALUE=8'})
    assert led.macro_vars('MARK')['value'] == 8
    untouched(main, afc)


def test_api_subscriptions_are_bounded_and_keep_config_ones(mesh):
    main = mesh.add_router_node('main', ['led'], COMMON)
    mesh.add_router_node('led', ['main'], COMMON, {
        'main': "subscribe: gcode_macro MARK:value\non_update: REC\n"})
    mesh.start()
    mesh.wait_links()
    led = mesh['led']
    with ApiClient(led.sock) as raw:
        with pytest.raises(ApiError) as e:
            raw.request('router/objects/subscribe', {
                'target': 'main', 'objects': {'gcode_macro MARK': None},
                'gcode_callback': 'REC'})
        assert 'set in the config' in str(e.value)
        added = 0
        with pytest.raises(ApiError) as e:
            for i in range(100):
                raw.request('router/objects/subscribe', {
                    'target': 'main', 'objects': {'print_stats': None},
                    'gcode_callback': 'CB%d' % (i,)})
                added += 1
        assert 'subscriptions to this peer already' in str(e.value)
        assert added == 31
    # The config subscription still runs its callback
    led.client
    main.gcode('MARK VALUE=3')
    wait_until(lambda: any(r.get('GCODE_MACRO_MARK_VALUE') == '3'
                           for r in output_json(led, 'REC')), 5.)
    assert led.state() == 'ready'


def test_call_pushes_only_count_on_served_links(mesh):
    # 'fake' runs the module (it answers router/info): main registers no
    # remote methods on it, so a pushed call is not main's to take
    main, fake = fake_pair(mesh)
    try:
        for conn in fake.live():
            conn.push({'router': 'call', 'method': 'router/gcode/script',
                       'params': {'target': 'main', 'script': PWN}})
        time.sleep(.5)
        assert main.macro_vars('PWN')['v'] == 0
        assert "ignored remote call from 'fake'" in main.log_text()
        assert main.state() == 'ready'
    finally:
        fake.stop()


# 3. printer.router is never stale

def test_status_of_a_peer_in_shutdown_is_fresh(mesh):
    main = mesh.add_router_node('main', ['led'], COMMON)
    led = mesh.add_router_node('led', ['main'], COMMON)
    mesh.start('led')
    led.gcode('M112')
    led.wait_state('shutdown')
    mesh.start('main')
    # Followed the way a UI follows it: a subscription to the router object
    with ApiClient(main.sock) as api:
        first = api.request('objects/subscribe', {
            'objects': {'router': None},
            'response_template': {'method': 'sub'}})['status']['router']
        def peer():
            pushes = [p['params']['status']['router'] for p in api.pushes
                      if 'router' in p.get('params', {}).get('status', {})]
            view = dict(first['peers']['led'])
            for push in pushes:
                view.update(push.get('peers', {}).get('led', {}))
            return view
        wait_until(lambda: peer()['connected'] and peer()['module']
                   and peer()['state'] == 'shutdown', 5.)
        assert not peer()['ready']
        led.kill()
        wait_until(lambda: not peer()['connected']
                   and peer()['last_error'], 5.)
    assert main.router_status()['peers']['led']['state'] == 'disconnected'


# 4. An instance that is not ready stays in the mesh

def test_instance_in_error_is_seen_and_restarted_by_a_peer(mesh):
    main = mesh.add_router_node('main', ['led'], COMMON)
    # (restart_method: command: FIRMWARE_RESTART would reset the MCU over
    # its serial port, and these test instances have none)
    led = mesh.add_router_node('led', ['main'], COMMON
                               + "\n[mcu]\nrestart_method: command\n"
                               + "\n[pause_resume]\nbogus_option: 1\n")
    mesh.start('main')
    led.start()
    led.wait_state('error')
    wait_until(lambda: main.router_status()['peers']['led']['state']
               == 'error', 10.)
    st = main.router_status()['peers']['led']
    assert st['connected'] and st['module'] and not st['ready']
    assert 'bogus_option' in st['state_message']
    # led in error sees main too
    wait_until(lambda: led.router_status()['peers']['main']['ready'], 5.)
    # Ordinary G-code is refused at once; a restart goes through
    with pytest.raises(ApiError) as e:
        main.gcode("ROUTER_GCODE_SCRIPT TARGET=led SCRIPT='M118 x'")
    assert "Klipper state is 'error'" in str(e.value)
    with open(led.cfg) as f:
        text = f.read()
    with open(led.cfg, 'w') as f:
        f.write(text.replace('bogus_option: 1\n', ''))
    main.gcode("ROUTER_GCODE_SCRIPT TARGET=led SCRIPT=FIRMWARE_RESTART")
    led.wait_ready(20.)
    wait_until(lambda: main.router_status()['peers']['led']['ready'], 10.)
    for node in (main, led):
        assert_clean_log(node)


# 5. Frames a peer sends are bounded in size and in decoding cost

def test_large_real_reply_passes(mesh):
    # A large config: its configfile status is a large frame of text
    macros = ''.join(
        "\n[gcode_macro BIG_%d]\ndescription: %s\ngcode:\n%s" % (
            i, 'A macro, as configs have them: ' + 'x' * 40,
            ''.join('  G1 X%d Y%d F3000 ; move %d, then wait: done.\n'
                    % (j, j, j) for j in range(20))) for i in range(700))
    main = mesh.add_router_node('main', ['led'], COMMON)
    mesh.add_router_node('led', ['main'], COMMON + macros)
    mesh.start()
    mesh.wait_links()
    # Through main's router, from led's socket to a client of main
    reply = main.client.request('router/objects/query', {
        'target': 'led', 'objects': {'configfile': None}}, timeout=30)
    size = len(json.dumps(reply))
    assert size > 600000, size
    assert 'gcode_macro BIG_699' in reply['status']['configfile']['config']
    assert main.router_status()['peers']['led']['ready']


@pytest.mark.parametrize('kind', ['oversized', 'too_many_tokens'])
def test_costly_frame_closes_the_link_not_the_host(mesh, kind):
    main, fake = fake_pair(mesh)
    try:
        if kind == 'oversized':
            data = b'{"a":"' + b'x' * (2 * 1024 * 1024) + b'"}\x03'
            reason = 'frame larger than'
        else:
            data = b'{"a":[' + b'[],' * 200000 + b'[]]}\x03'
            reason = 'JSON tokens'
        for conn in fake.live():
            try:
                conn.send(data)
            except OSError:
                pass   # main closed the link while it was sent
        wait_until(lambda: reason in main.router_status()['peers']['fake'][
            'last_error'], 5.)
        # and it comes back
        wait_until(lambda: main.router_status()['peers']['fake']['ready'],
                   10.)
        assert main.state() == 'ready'
        assert_clean_log(main)
    finally:
        fake.stop()


# 6. Python templates (Kalico's '!' prefix) run as hooks

def test_python_template_hook_on_kalico(mesh, runtime):
    if runtime.flavor != 'kalico':
        pytest.skip("Python templates ('!' prefix) exist on Kalico only")
    mesh.add_router_node('main', ['led'], COMMON, {
        'led': 'on_connect: !emit("MARK VALUE=7")\n'})
    mesh.add_router_node('led', ['main'], COMMON)
    mesh.start()
    mesh.wait_links()
    wait_until(lambda: mesh['main'].macro_vars('MARK')['value'] == 7, 5.)
    assert_clean_log(mesh['main'])
