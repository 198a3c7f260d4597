# Drop-in compatibility with the old klipper-router bridge: the router/*
# endpoints, action_call_remote_method macros, and a peer without the
# module that uses router_api.cfg-style wrapper macros.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import json, time
import pytest
from harness import ApiError, Mesh, output_json, wait_until
from macros import MARK, REC, FAIL

COMMON = MARK + REC + FAIL

# Macros written for the old bridge, on an instance with the module
OLD_MACROS = r"""
[gcode_macro OLD_SEND]
gcode:
  {action_call_remote_method("router/gcode/script", target="led", script="MARK VALUE=" ~ params.VALUE)}

[gcode_macro OLD_TRIGGER]
gcode:
  {action_call_remote_method("router/event/trigger", event="feed", context={"lane": 2, "note": "a b"})}

[gcode_macro OLD_EVENT_SUB]
gcode:
  {action_call_remote_method("router/event/subscribe", event="mine", gcode="REC LANE={lane}")}

[gcode_macro OLD_FOLLOW]
gcode:
  {action_call_remote_method("router/objects/subscribe", target="led", objects={"gcode_macro MARK": ["value"]}, gcode_callback="REC")}

[gcode_macro OLD_QUERY]
gcode:
  {action_call_remote_method("router/objects/query", target="led", objects={"gcode_macro MARK": ["value"]}, gcode_callback="REC")}
"""

# router_api.cfg-style wrappers and hooks, on a Klipper without the module
PLAIN = r"""
[gcode_macro HOOKS]
variable_ready: 0
variable_connected: ''
variable_disconnected: ''
gcode:

[gcode_macro ROUTER_ON_READY]
gcode:
  SET_GCODE_VARIABLE MACRO=HOOKS VARIABLE=ready VALUE={printer["gcode_macro HOOKS"].ready + 1}

[gcode_macro ROUTER_ON_CONNECTED]
gcode:
  SET_GCODE_VARIABLE MACRO=HOOKS VARIABLE=connected VALUE="'{printer['gcode_macro HOOKS'].connected}{params.PRINTER},'"

[gcode_macro ROUTER_ON_DISCONNECTED]
gcode:
  SET_GCODE_VARIABLE MACRO=HOOKS VARIABLE=disconnected VALUE="'{printer['gcode_macro HOOKS'].disconnected}{params.PRINTER},'"

[gcode_macro ROUTER_GCODE_SCRIPT]
gcode:
  {action_call_remote_method("router/gcode/script", target=params.TARGET, script=params.SCRIPT)}

[gcode_macro ROUTER_EVENT_SUBSCRIBE]
gcode:
  {action_call_remote_method("router/event/subscribe", event=params.EVENT, gcode=params.GCODE)}

[gcode_macro ROUTER_EVENT_TRIGGER]
gcode:
  {% set ctx = {} %}
  {% for kv in (params.CONTEXT|default('')).split(',') if '=' in kv %}
    {% set k, v = kv.split('=', 1) %}
    {% set _ = ctx.update({k: v}) %}
  {% endfor %}
  {action_call_remote_method("router/event/trigger", event=params.EVENT, context=ctx)}

[gcode_macro ROUTER_PRINTERS_LIST]
gcode:
  {action_call_remote_method("router/printers/list", gcode_callback="REC")}

[gcode_macro ROUTER_OBJECTS_LIST]
gcode:
  {action_call_remote_method("router/objects/list", target=params.TARGET, gcode_callback="REC")}

[gcode_macro ROUTER_OBJECTS_QUERY]
gcode:
  {% set objs = {} %}
  {% for o in params.OBJECTS.split(',') %}{% set _ = objs.update({o: None}) %}{% endfor %}
  {action_call_remote_method("router/objects/query", target=params.TARGET, objects=objs, gcode_callback=params.CALLBACK|default('REC'))}

[gcode_macro ROUTER_OBJECTS_SUBSCRIBE]
gcode:
  {% set objs = {} %}
  {% for o in params.OBJECTS.split(',') %}{% set _ = objs.update({o: None}) %}{% endfor %}
  {action_call_remote_method("router/objects/subscribe", target=params.TARGET, objects=objs, gcode_callback=params.CALLBACK)}
"""


def recs(node):
    return output_json(node, 'REC')


def wait_recs(node, n, timeout=5.):
    wait_until(lambda: len(recs(node)) >= n, timeout,
               what="%d REC lines on %s" % (n, node.name))
    return recs(node)


@pytest.fixture(scope='module')
def pair(runtime):
    m = Mesh(runtime)
    m.add_router_node('main', ['led'], COMMON + OLD_MACROS)
    m.add_router_node('led', ['main'], COMMON)
    with m.running():
        yield m


def test_router_endpoints_for_api_clients(pair):
    main, led = pair['main'], pair['led']
    api = main.client
    res = api.request('router/printers/list', {})
    assert [(p['name'], p['ready'], p['module']) for p in res['printers']] \
        == [('main', True, True), ('led', True, True)]
    assert api.request('router/gcode/script', {
        'target': 'led', 'script': 'MARK VALUE=3'}) == {}
    assert led.macro_vars('MARK')['value'] == 3
    # This instance as the target: answered once the script ran here
    assert api.request('router/gcode/script', {
        'target': 'main', 'script': 'MARK VALUE=4'}, timeout=5.) == {}
    assert main.macro_vars('MARK')['value'] == 4
    with pytest.raises(ApiError) as e:
        api.request('router/gcode/script', {'target': 'main',
                                            'script': 'FAIL'}, timeout=5.)
    assert 'deliberate failure' in str(e.value)
    with pytest.raises(ApiError) as e:
        api.request('router/gcode/script', {'target': 'led',
                                            'script': 'FAIL'})
    assert 'deliberate failure' in str(e.value) and "'led'" in str(e.value)
    for params, expect in [({'target': 'nobody', 'script': 'M118'},
                            'unknown target'),
                           ({'target': 'led'}, "'script'"),
                           ({'target': 5, 'script': 'x'}, "'target'")]:
        with pytest.raises(ApiError) as e:
            api.request('router/gcode/script', params)
        assert expect in str(e.value)
    names = api.request('router/objects/list', {'target': 'led'})['objects']
    assert 'gcode_macro MARK' in names
    res = api.request('router/objects/query', {
        'target': 'led', 'objects': {'gcode_macro MARK': ['value']}})
    assert res['status'] == {'gcode_macro MARK': {'value': 3}}
    with pytest.raises(ApiError):
        api.request('router/objects/query', {'target': 'led',
                                             'objects': {'x': 5}})
    # A handler placed on led, then an event from the API
    assert api.request('router/event/subscribe', {
        'event': 'api_ev', 'gcode': 'REC', 'callback_target': 'led'}) == {
            'added': True}
    n = len(recs(led))
    res = api.request('router/event/trigger', {'event': 'api_ev',
                                               'context': {'x': 1}})
    assert res == {'event': 'api_ev', 'not_reached': {}}
    assert wait_recs(led, n + 1)[-1] == {'X': '1', 'EVENT': 'api_ev',
                                         'SOURCE': 'main'}
    assert main.state() == 'ready' and led.state() == 'ready'


def test_old_bridge_macros_on_an_instance_with_the_module(pair):
    main, led = pair['main'], pair['led']
    main.gcode("OLD_SEND VALUE=7")
    wait_until(lambda: led.macro_vars('MARK')['value'] == 7, 5.)
    led.gcode("ROUTER_EVENT_SUBSCRIBE EVENT=feed GCODE=REC")
    n = len(recs(led))
    main.gcode("OLD_TRIGGER")
    assert wait_recs(led, n + 1)[-1] == {'LANE': '2', 'NOTE': 'a b',
                                         'EVENT': 'feed', 'SOURCE': 'main'}
    main.gcode("OLD_EVENT_SUB")
    m = len(recs(main))
    led.gcode("ROUTER_EVENT_TRIGGER EVENT=mine LANE=4")
    assert wait_recs(main, m + 1)[-1] == {'LANE': '4', 'EVENT': 'mine',
                                          'SOURCE': 'led'}
    m = len(recs(main))
    main.gcode("OLD_QUERY")
    assert wait_recs(main, m + 1)[-1] == {'GCODE_MACRO_MARK_VALUE': '7',
                                          'PRINTER': 'led'}
    main.gcode("OLD_FOLLOW")
    assert wait_recs(main, m + 2)[-1] == {'GCODE_MACRO_MARK_VALUE': '7',
                                          'PRINTER': 'led'}
    led.gcode("MARK VALUE=8")
    assert wait_recs(main, m + 3)[-1] == {'GCODE_MACRO_MARK_VALUE': '8',
                                          'PRINTER': 'led'}
    # Issued again: not a second subscription
    main.gcode("OLD_FOLLOW")
    wait_recs(main, m + 4)
    led.gcode("MARK VALUE=9")
    wait_recs(main, m + 5)
    time.sleep(.6)
    assert len(recs(main)) == m + 5


def test_mesh_with_a_klipper_without_the_module(mesh):
    mesh.add_router_node('main', ['plain', 'led'], COMMON)
    mesh.add_router_node('led', ['main'], COMMON)
    mesh.add('plain', COMMON + PLAIN)
    plain, main, led = mesh['plain'], mesh['main'], mesh['led']
    mesh.start('plain', 'led')
    plain.client
    mesh.start('main')
    mesh.wait_links()
    st = main.router_status()['peers']
    assert st['plain']['module'] is False and st['led']['module'] is True
    # The old bridge's lifecycle macros ran on plain, once each
    wait_until(lambda: plain.macro_vars('HOOKS')['ready'] == 1, 5.)
    wait_until(lambda: sorted(plain.macro_vars('HOOKS')['connected']
                              .strip(',').split(',')) == ['led', 'main'],
               5.)
    # router_api.cfg wrappers, unchanged
    plain.gcode('ROUTER_GCODE_SCRIPT TARGET=led SCRIPT="MARK VALUE=9"')
    wait_until(lambda: led.macro_vars('MARK')['value'] == 9, 5.)
    plain.gcode('ROUTER_EVENT_SUBSCRIBE EVENT=ace_feed'
                ' GCODE="REC LANE={lane}"')
    time.sleep(.3)
    led.gcode("ROUTER_EVENT_TRIGGER EVENT=ace_feed LANE=3")
    assert wait_recs(plain, 1)[-1] == {'LANE': '3', 'EVENT': 'ace_feed',
                                       'SOURCE': 'led'}
    for node in (main, led):
        node.gcode("ROUTER_EVENT_SUBSCRIBE EVENT=feed GCODE=REC")
    n = {node.name: len(recs(node)) for node in (main, led)}
    plain.gcode('ROUTER_EVENT_TRIGGER EVENT=feed CONTEXT="lane=5"')
    for node in (main, led):
        assert wait_recs(node, n[node.name] + 1)[-1] == {
            'LANE': '5', 'EVENT': 'feed', 'SOURCE': 'plain'}
    k = len(recs(plain))
    plain.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=main'
                ' OBJECTS="gcode_macro MARK" CALLBACK=REC')
    assert wait_recs(plain, k + 1)[-1] == {'GCODE_MACRO_MARK_VALUE': '0',
                                           'GCODE_MACRO_MARK_COUNT': '0',
                                           'PRINTER': 'main'}
    main.gcode("MARK VALUE=11")
    assert wait_recs(plain, k + 2)[-1] == {
        'GCODE_MACRO_MARK_VALUE': '11', 'GCODE_MACRO_MARK_COUNT': '1',
        'PRINTER': 'main'}
    plain.gcode('ROUTER_OBJECTS_QUERY TARGET=led OBJECTS="gcode_macro'
                ' MARK"')
    assert wait_recs(plain, k + 3)[-1] == {
        'GCODE_MACRO_MARK_VALUE': '9', 'GCODE_MACRO_MARK_COUNT': '1',
        'PRINTER': 'led'}
    plain.gcode('ROUTER_PRINTERS_LIST')
    printers = json.loads(wait_recs(plain, k + 4)[-1]['PRINTERS'])
    assert [p['name'] for p in printers] == ['main', 'led', 'plain']
    time.sleep(.6)
    # Each of these ran once on plain
    assert len(recs(plain)) == k + 4
    led.kill()
    wait_until(lambda: plain.macro_vars('HOOKS')['disconnected']
               == 'led,', 5.)
    for node in (main, plain):
        assert node.state() == 'ready'
