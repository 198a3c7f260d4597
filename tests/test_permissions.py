# Per-peer permissions: [router NAME] allow: on the instance that receives
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import time
import pytest
from harness import ApiClient, ApiError
from macros import MARK, REC

MACROS = MARK + REC + r"""

[router event ping]
gcode: REC
"""


def test_allow_restricts_what_a_peer_may_do(mesh):
    # main lets led read its state and fire events, not run G-code
    mesh.add_router_node('main', ['led'], MACROS, {
        'led': "allow: query, subscribe, events\n"})
    mesh.add_router_node('led', ['main'], MACROS)
    mesh.start()
    mesh.wait_links()
    main, led = mesh['main'], mesh['led']
    out = main.client
    for cmd in ("ROUTER_GCODE_SCRIPT TARGET=main SCRIPT='MARK VALUE=1'",
                "ROUTER_GCODE_SCRIPT TARGET=main WAIT=1 SCRIPT='MARK"
                " VALUE=1'"):
        with pytest.raises(ApiError) as e:
            led.gcode(cmd)
        assert "'main' does not accept gcode from 'led'" in str(e.value)
    time.sleep(.3)
    assert main.macro_vars('MARK')['value'] == 0
    # Reading and events are allowed
    led.gcode('ROUTER_OBJECTS_QUERY TARGET=main OBJECTS="gcode_macro MARK"')
    led.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=main OBJECTS="gcode_macro'
              ' MARK" CALLBACK=REC')
    led.gcode("ROUTER_EVENT_TRIGGER EVENT=ping")
    out.wait_output(lambda l: l.startswith('// REC {') and '"led"' in l)
    # The other way round nothing is restricted
    main.gcode("ROUTER_GCODE_SCRIPT TARGET=led WAIT=1 SCRIPT='MARK VALUE=3'")
    assert led.macro_vars('MARK')['value'] == 3
    # Enforced where the request arrives: a client that says it is led's
    # router and ignores the policy it was told is refused by main itself
    with ApiClient(main.sock) as raw:
        told = raw.request('router/info', {'name': 'led'})
        assert told['allow'] == ['events', 'query', 'subscribe']
        with pytest.raises(ApiError) as e:
            raw.request('router/gcode', {'script': 'MARK VALUE=9'})
        assert "'main' does not accept gcode from 'led'" in str(e.value)
        with ApiClient(main.sock) as other:   # not led: not restricted
            other.request('router/gcode', {'script': 'MARK VALUE=9'})
    assert main.macro_vars('MARK')['value'] == 9
    for node in (main, led):
        assert node.state() == 'ready'


def test_allow_nothing_and_bad_values(mesh):
    mesh.add_router_node('main', ['led'], MACROS, {'led': "allow:\n"})
    mesh.add_router_node('led', ['main'], MACROS, {
        'main': "subscribe: print_stats:state\non_update: REC\n"})
    mesh.start('main')
    led = mesh['led']
    mesh.start('led')
    out = led.client
    mesh.wait_links()
    for cmd, action in [
            ('ROUTER_OBJECTS_QUERY TARGET=main OBJECTS=print_stats', 'query'),
            ('ROUTER_OBJECTS_LIST TARGET=main', 'query'),
            ('ROUTER_OBJECTS_SUBSCRIBE TARGET=main OBJECTS=print_stats',
             'subscribe')]:
        with pytest.raises(ApiError) as e:
            led.gcode(cmd)
        assert "does not accept %s from 'led'" % (action,) in str(e.value)
    led.gcode("ROUTER_EVENT_TRIGGER EVENT=ping")
    out.wait_output(lambda l: "did not reach: main (it does not accept"
                    " events" in l)
    assert led.router_status()['peers']['main']['objects'] == {}
    with ApiClient(mesh['main'].sock) as raw:
        assert raw.request('router/info', {'name': 'led'})['allow'] == []
        with pytest.raises(ApiError) as e:
            raw.request('router/event/deliver', {
                'event': 'ping', 'context': {}, 'source': 'led'})
        assert "'main' does not accept events from 'led'" in str(e.value)
        # The relay path: led's event, and led relaying one from afc
        for origin in ('led', 'afc'):
            with pytest.raises(ApiError) as e:
                raw.request('router/mesh', {
                    'kind': 'event', 'origin': origin, 'id': origin,
                    'hops': 0, 'skip': [], 'event': 'ping', 'context': {}})
            assert "'main' does not accept events from 'led'" in str(e.value)
        # Fast following: the Klipper state for anyone, objects with
        # subscribe only
        with pytest.raises(ApiError) as e:
            raw.request('router/subscribe', {
                'objects': {'print_stats': None}, 'response_template': {}})
        assert "'main' does not accept subscribe from 'led'" in str(e.value)
        state = raw.request('router/subscribe', {
            'objects': {'webhooks': ['state']}, 'response_template': {}})
        assert state['status'] == {'webhooks': {'state': 'ready'}}
    node = mesh.add_router_node('afc', ['main'], '', {'main': "allow: all\n"})
    node.start()
    node.wait_state('error')
    assert "unknown all" in node.info()['state_message']
