# Unit tests of the doctor's checks (router/klipper/sansio/diagnosis.py),
# without klippy: what a config needs, and data from peers that is
# anything. tests/test_doctor.py runs the doctor on real klippy.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import random
from router.klipper.sansio import diagnosis
from router.klipper.sansio.diagnosis import Here, PeerFacts
from router.peer.sansio.session import CLIENT_VERSION, Phase


def here(**kw):
    values = dict(name='main', mesh='default', socket='/tmp/main.sock',
                  state='ready', message='', config={}, callers=set(),
                  allow_unlisted=False, peer_names=['led'], kid='k0',
                  version=CLIENT_VERSION)
    values.update(kw)
    return Here(**values)


def peer(**kw):
    values = dict(name='led', socket='/tmp/led.sock', url=None,
                  phase=Phase.READY, state='ready', message='', last_error='',
                  socket_state='ok', has_module=True, known=True,
                  remote_allow=frozenset(['gcode', 'query', 'subscribe',
                                          'events']),
                  allow=frozenset(['gcode', 'query', 'subscribe', 'events']),
                  allow_where='[router led]', subs=[],
                  info={'name': 'led', 'mesh': 'default',
                        'version': CLIENT_VERSION, 'known': True,
                        'allow': ['events', 'gcode', 'query', 'subscribe']},
                  objects=['webhooks', 'print_stats'],
                  status={'print_stats': {'state': 'ready'}}, config={},
                  unanswered=[], kid='k1')
    values.update(kw)
    return PeerFacts(**values)


def examine(h, peers):
    return [(f.peer, f.kind) for f in diagnosis.examine(
        h, peers, lambda path: path == '/tmp/main.sock')]


def test_a_healthy_peer_gives_nothing():
    assert examine(here(), [peer()]) == []
    assert diagnosis.report([]) == "Router doctor: no problems found"


def test_targets_literal_only():
    config = {'gcode_macro A': {'gcode': (
        "ROUTER_GCODE_SCRIPT TARGET=led SCRIPT=M115\n"
        "router_objects_query target=AFC objects=toolhead\n"
        "ROUTER_GCODE_SCRIPT TARGET={params.T} SCRIPT=M115\n"
        "ROUTER_GCODE_SCRIPT TARGET=x{suffix} SCRIPT=M115\n"
        "ROUTER_GCODE_SCRIPT TARGET=afc SCRIPT=\"ROUTER_GCODE_SCRIPT"
        " TARGET=far SCRIPT=M115\"\n"
        "ROUTER_OBJECTS_SUBSCRIBE TARGET='led' OBJECTS=toolhead")},
        'router led': {'socket': '/tmp/led.sock'}, 'bad': ['x'], 3: {}}
    assert diagnosis.config_targets(config, 'main') == [
        ('led', 'gcode', '[gcode_macro A] gcode'),
        ('afc', 'query', '[gcode_macro A] gcode'),
        ('afc', 'gcode', '[gcode_macro A] gcode')]
    assert diagnosis.event_trigger(config, 'main') is None
    assert diagnosis.event_trigger({'a': {'b': 'x\n ROUTER_EVENT_TRIGGER'
                                          ' EVENT=e'}}, 'main') == '[a] b'
    # A mesh file's section of this instance is not this instance's
    shared = {'router main': {'on_connect': 'ROUTER_GCODE_SCRIPT TARGET=x'
                                            ' SCRIPT=M1'},
              'router led': {'on_connect': 'ROUTER_GCODE_SCRIPT TARGET=y'
                                           ' SCRIPT=M1'}}
    assert diagnosis.config_targets(shared, 'main') == [
        ('y', 'gcode', '[router led] on_connect')]
    assert examine(here(config=config), [peer()]) == [
        ('main', 'unknown_target')]


def test_each_side_of_allow():
    mine = {'gcode_macro A': {'gcode': 'ROUTER_GCODE_SCRIPT TARGET=led'
                                       ' SCRIPT=M1\nROUTER_EVENT_TRIGGER'
                                       ' EVENT=e'}}
    theirs = {'router main': {'socket': '/tmp/main.sock',
                              'subscribe': 'toolhead'}}
    p = peer(info=dict(peer().info, allow=['query']),
             allow=frozenset(['gcode']), config=theirs,
             subs=[('subscribe: of [router led]', {'toolhead': None})],
             objects=['toolhead'])
    found = diagnosis.examine(here(config=mine), [p], lambda s: True)
    assert [(f.kind, f.problem.split(' needs ')[1].split(' ')[0])
            for f in found] == [
        ('refused_there', 'subscribe'), ('refused_there', 'gcode'),
        ('refused_there', 'events'), ('refused_here', 'subscribe')]
    # Not listed there: one finding, not one per action
    p = p._replace(known=False, info=dict(p.info, known=False, allow=[]))
    assert [f.kind for f in diagnosis.examine(
        here(config=mine), [p], lambda s: True)] == [
        'not_listed_there', 'refused_here']


def test_link_phases():
    assert examine(here(), [peer(phase=Phase.CONNECTING)]) == []
    for phase, state, kind in [
            (Phase.UNRESPONSIVE, 'ready', 'not_responding'),
            (Phase.NOT_READY, 'startup', 'not_ready'),
            (Phase.NOT_READY, 'shutdown', 'klipper_error')]:
        assert (('led', kind) in examine(here(), [peer(
            phase=phase, state=state)]))
    p = peer(phase=Phase.DISCONNECTED, info=None, objects=None,
             socket_state='ok', last_error='permission denied on the'
             ' socket file')
    assert examine(here(), [p]) == [('led', 'not_connected')]
    p = p._replace(url='ws://h:1/klippysocket', socket=None,
                   socket_state=None, last_error='cannot resolve h')
    assert examine(here(), [p]) == [('led', 'not_connected')]


def test_garbage_from_a_peer_raises_nothing():
    rng = random.Random(7)
    junk = [None, 1, 'x', [], ['a', 1, None], {}, {'a': None},
            {'name': 5, 'mesh': [], 'version': {}, 'allow': 'gcode',
             'known': 'no'}, {'configfile': 'x'}, {'x': {'y': 3}},
            {'router main': {'socket': 5}}, '\x00\n' * 50, 1e300]
    for _ in range(2000):
        p = peer(info=rng.choice(junk), objects=rng.choice(junk),
                 status=rng.choice(junk), config=rng.choice(junk),
                 message=rng.choice(['', 'a\nb', '\x1b[2J' * 30]),
                 phase=rng.choice(list(Phase)),
                 state=rng.choice(['ready', 'error', 'startup']),
                 subs=[('s', {'print_stats': ['x'], 'toolhead': None})])
        for f in diagnosis.examine(here(), [p], lambda s: False):
            line = diagnosis.report([f])
            assert '\x00' not in line and '\x1b' not in line
            assert line.count('\n') == 1
