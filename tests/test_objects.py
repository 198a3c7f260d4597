# Following another instance's objects: ROUTER_OBJECTS_*, callbacks,
# the mirror in printer.router, restarts, hostile strings.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import time
import pytest
from harness import ApiError, Mesh, output_json, wait_until
from macros import MARK, REC

MACROS = MARK + REC + r"""

[gcode_macro TEXT]
variable_s: ''
gcode:

[gcode_macro REC2]
variable_n: 0
gcode:
  SET_GCODE_VARIABLE MACRO=REC2 VARIABLE=n VALUE={printer["gcode_macro REC2"].n + 1}
  {action_respond_info("REC2 " ~ (params|tojson))}

[gcode_macro FAILCB]
gcode:
  {action_raise_error("callback failure")}

[gcode_macro READ_MIRROR]
variable_v: -1
gcode:
  SET_GCODE_VARIABLE MACRO=READ_MIRROR VARIABLE=v VALUE={printer.router.peers.main.objects['gcode_macro MARK'].value}
"""


def recs(node, prefix='REC'):
    return output_json(node, prefix)


def set_text(node, text):
    """Stores any text in TEXT.s on node without putting ';', '#', '*',
    quotes or newlines on the G-code line (the PyPI Klipper cuts lines at
    ';#*'): a Python literal made of escapes."""
    literal = '"%s"' % ''.join(
        c if (c.isascii() and c.isalnum()) else
        ('\\u%04x' % ord(c) if ord(c) < 0x10000 else '\\U%08x' % ord(c))
        for c in text)
    node.gcode("SET_GCODE_VARIABLE MACRO=TEXT VARIABLE=s VALUE='%s'"
               % (literal,))
    assert node.macro_vars('TEXT')['s'] == text


@pytest.fixture(scope='module')
def pair(runtime):
    with Mesh(runtime).add_full_mesh(('main', 'led'), MACROS).running() as m:
        yield m


def test_objects_list_and_query(pair):
    led = pair['led']
    out = led.client
    led.gcode("ROUTER_OBJECTS_LIST TARGET=main")
    text = out.wait_output(lambda l: "Objects of 'main'" in l)
    names = text.split('\n')[1:]
    assert '// print_stats' in names and '// gcode_macro MARK' in names
    pair['main'].gcode("MARK VALUE=3")
    led.gcode('ROUTER_OBJECTS_QUERY TARGET=main OBJECTS="gcode_macro MARK:'
              'value,print_stats:state|filename,no_such_object"')
    text = out.wait_output(lambda l: 'gcode_macro MARK:' in l)
    lines = text.split('\n')
    assert '// gcode_macro MARK: {"value": 3}' in lines
    assert '// no_such_object: (no such object or field)' in lines
    assert '// print_stats: {"filename": "", "state": "standby"}' in lines
    for bad, expect in [
            ("ROUTER_OBJECTS_QUERY TARGET=main OBJECTS=", "OBJECTS"),
            ("ROUTER_OBJECTS_QUERY TARGET=main OBJECTS=a:", "fields"),
            ("ROUTER_OBJECTS_QUERY TARGET=main OBJECTS=':x'", "no object"),
            ("ROUTER_OBJECTS_QUERY TARGET=main", "missing OBJECTS"),
            ("ROUTER_OBJECTS_LIST TARGET=led", "this instance"),
            ("ROUTER_OBJECTS_SUBSCRIBE TARGET=main OBJECTS=router",
             "router object of a peer cannot be followed"),
            ("ROUTER_OBJECTS_LIST TARGET=zzz", "Unknown TARGET")]:
        with pytest.raises(ApiError) as e:
            led.gcode(bad)
        assert expect in str(e.value), (bad, str(e.value))


def test_subscribe_full_state_first_then_changes_once(pair):
    main, led = pair['main'], pair['led']
    main.gcode("MARK VALUE=5")
    count = main.macro_vars('MARK')['count']
    n0 = len(recs(led))
    led.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=main OBJECTS="gcode_macro'
              ' MARK:value|count,print_stats:state" CALLBACK=REC')
    wait_until(lambda: len(recs(led)) == n0 + 1, 5.)
    assert recs(led)[-1] == {'GCODE_MACRO_MARK_VALUE': '5',
                             'GCODE_MACRO_MARK_COUNT': str(count),
                             'PRINT_STATS_STATE': 'standby',
                             'PRINTER': 'main'}
    # A change: only the changed fields
    main.gcode("MARK VALUE=6")
    wait_until(lambda: len(recs(led)) == n0 + 2, 5.)
    assert recs(led)[-1] == {'GCODE_MACRO_MARK_VALUE': '6',
                             'GCODE_MACRO_MARK_COUNT': str(count + 1),
                             'PRINTER': 'main'}
    # Issued again: updated, not added; a full callback again
    led.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=main OBJECTS="gcode_macro'
              ' MARK:value" CALLBACK=rec')
    wait_until(lambda: len(recs(led)) == n0 + 3, 5.)
    assert recs(led)[-1] == {'GCODE_MACRO_MARK_VALUE': '6',
                             'PRINTER': 'main'}
    main.gcode("MARK VALUE=7")
    wait_until(lambda: len(recs(led)) == n0 + 4, 5.)
    time.sleep(.6)
    assert len(recs(led)) == n0 + 4
    assert recs(led)[-1] == {'GCODE_MACRO_MARK_VALUE': '7',
                             'PRINTER': 'main'}
    # The mirror, from the API and from a template
    st = led.router_status()['peers']['main']['objects']
    assert st == {'gcode_macro MARK': {'value': 7}}
    led.gcode("READ_MIRROR")
    assert led.macro_vars('READ_MIRROR')['v'] == 7
    # Unsubscribed: no more callbacks, the mirror empties
    led.gcode("ROUTER_OBJECTS_UNSUBSCRIBE TARGET=main CALLBACK=REC")
    main.gcode("MARK VALUE=8")
    time.sleep(.8)
    assert len(recs(led)) == n0 + 4
    assert led.router_status()['peers']['main']['objects'] == {}
    with pytest.raises(ApiError) as e:
        led.gcode("ROUTER_OBJECTS_UNSUBSCRIBE TARGET=main CALLBACK=REC")
    assert 'No subscription' in str(e.value)


def test_two_callbacks_share_one_peer_subscription(pair):
    main, led = pair['main'], pair['led']
    led.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=main OBJECTS="gcode_macro'
              ' MARK:value" CALLBACK=REC')
    led.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=main OBJECTS="gcode_macro'
              ' TEXT:s" CALLBACK=REC2')
    wait_until(lambda: len(recs(led, 'REC2')) >= 1, 5.)
    n1, n2 = len(recs(led)), len(recs(led, 'REC2'))
    main.gcode("MARK VALUE=40")
    wait_until(lambda: len(recs(led)) == n1 + 1, 5.)
    assert recs(led)[-1] == {'GCODE_MACRO_MARK_VALUE': '40',
                             'PRINTER': 'main'}
    set_text(main, 'hello')
    wait_until(lambda: len(recs(led, 'REC2')) == n2 + 1, 5.)
    assert recs(led, 'REC2')[-1] == {'GCODE_MACRO_TEXT_S': 'hello',
                                     'PRINTER': 'main'}
    time.sleep(.6)
    # Each callback got only its own fields, each change once
    assert len(recs(led)) == n1 + 1 and len(recs(led, 'REC2')) == n2 + 1
    led.gcode("ROUTER_OBJECTS_UNSUBSCRIBE TARGET=main")
    assert led.router_status()['peers']['main']['objects'] == {}


HOSTILE = [
    "it's \"quoted\"",
    "line1\nM112",
    "x; MARK VALUE=99",
    "# not a comment",
    "a=b c=d VALUE=99",
    "star*42",
    "ünïcødé ✓ 🎉",
    "\n",
    "",
    "{params} {% raw %}",
    "\\n\\\\",
]


def test_hostile_strings_arrive_as_exact_text(pair):
    main, led = pair['main'], pair['led']
    led.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=main OBJECTS="gcode_macro'
              ' TEXT:s" CALLBACK=REC')
    wait_until(lambda: recs(led) and recs(led)[-1].get('GCODE_MACRO_TEXT_S')
               is not None, 5.)
    mark_before = led.macro_vars('MARK')
    for text in HOSTILE + ['end']:
        n = len(recs(led))
        set_text(main, text)
        wait_until(lambda: len(recs(led)) == n + 1, 5., what=repr(text))
        # Control characters arrive as spaces, everything else exact; the
        # mirror keeps the exact value
        assert recs(led)[-1] == {
            'GCODE_MACRO_TEXT_S': text.replace('\n', ' '), 'PRINTER': 'main'}
        assert led.router_status()['peers']['main']['objects'][
            'gcode_macro TEXT']['s'] == text
        # Klipper samples every 0.25 s: let each value be seen
        time.sleep(.3)
    # Nothing ran on led but the callback
    assert led.macro_vars('MARK') == mark_before
    assert led.state() == 'ready' and main.state() == 'ready'
    assert led.router_status()['peers']['main']['objects'] == {
        'gcode_macro TEXT': {'s': 'end'}}
    led.gcode("ROUTER_OBJECTS_UNSUBSCRIBE TARGET=main")


def test_callback_errors_are_reported_and_subscription_stays(pair):
    main, led = pair['main'], pair['led']
    out = led.client
    with pytest.raises(ApiError) as e:
        led.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=main OBJECTS=print_stats'
                  ' CALLBACK=NO_SUCH_MACRO')
    assert 'no [gcode_macro NO_SUCH_MACRO]' in str(e.value)
    led.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=main OBJECTS="gcode_macro'
              ' MARK:value" CALLBACK=FAILCB')
    out.wait_output(lambda l: 'callback FAILCB' in l and "'main'" in l)
    n = sum('callback FAILCB' in l for l in out.output)
    main.gcode("MARK VALUE=55")
    wait_until(lambda: sum('callback FAILCB' in l for l in out.output)
               == n + 1, 5.)
    line = [l for l in out.output if 'callback FAILCB' in l][-1]
    assert line.startswith('// Router:') and 'callback failure' in line
    assert led.state() == 'ready'
    led.gcode("ROUTER_OBJECTS_UNSUBSCRIBE TARGET=main CALLBACK=FAILCB")


STANDING = ("subscribe: print_stats:state, gcode_macro MARK:value\n"
            "on_update: REC\n")


def test_standing_subscription_survives_restarts_of_both_sides(mesh):
    """led starts before main; 20 RESTARTs of each side; then each change
    still gives exactly one callback."""
    mesh.add_router_node('main', ['led'], MACROS)
    mesh.add_router_node('led', ['main'], MACROS, {'main': STANDING})
    main, led = mesh['main'], mesh['led']
    mesh.start('led')
    out = led.client
    assert led.router_status()['peers']['main']['ready'] is False
    time.sleep(.5)
    mesh.start('main')
    wait_until(lambda: len(recs(led)) >= 1, 5.)
    assert recs(led)[0] == {'PRINT_STATS_STATE': 'standby',
                            'GCODE_MACRO_MARK_VALUE': '0', 'PRINTER': 'main'}
    assert out is led.client
    for i in range(20):
        main.restart()
        mesh.wait_links()
    wait_until(lambda: len(recs(led)) == 21, 5., what="21 RECs, got %d" % len(recs(led)))
    for i in range(20):
        led.restart()
        mesh.wait_links()
    wait_until(lambda: led.macro_vars('REC')['n'] == 1, 5.)
    # Settled: one change, one callback
    time.sleep(.5)
    assert led.macro_vars('REC')['n'] == 1
    main.gcode("MARK VALUE=77")
    wait_until(lambda: led.macro_vars('REC')['n'] == 2, 5.)
    time.sleep(1.)
    assert led.macro_vars('REC')['n'] == 2
    assert recs(led)[-1] == {'GCODE_MACRO_MARK_VALUE': '77',
                             'PRINTER': 'main'}
    with pytest.raises(ApiError) as e:
        led.gcode("ROUTER_OBJECTS_UNSUBSCRIBE TARGET=main CALLBACK=REC")
    assert 'set in the config' in str(e.value)
    # While main is down the mirror keeps the last values
    main.kill()
    wait_until(lambda: not led.router_status()['peers']['main']['ready'], 5.)
    st = led.router_status()['peers']['main']
    assert st['objects']['gcode_macro MARK'] == {'value': 77}
    assert led.state() == 'ready'


@pytest.mark.parametrize('config,expect', [
    ("subscribe: print_stats:\n", "subscribe"),
    ("subscribe: ,\n", "no objects"),
    ("on_update: REC\n", "needs a 'subscribe'"),
    ("subscribe: print_stats\non_update: bad name\n", "not a macro name"),
])
def test_subscription_config_errors(mesh, config, expect):
    node = mesh.add_router_node('led', ['main'], '', {'main': config})
    node.start()
    node.wait_state('error')
    msg = node.info()['state_message']
    assert expect in msg, msg
