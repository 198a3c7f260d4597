# Unit tests of the pure parts behind subscriptions (merging, the mirror,
# snapshot and delta diffs, callback parameters) and events (handlers,
# placeholders, contexts, the handler table): no klippy, no sockets.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import pytest
from router.mesh.sansio import events
from router.peer.sansio import subscriptions
from router.peer.sansio.subscriptions import Subscription, SubscriptionSet


# Subscriptions

def test_parse_objects_merges_and_refuses():
    p = subscriptions.parse_objects
    assert p('print_stats:state, heater_generic chamber:temperature|target,'
             ' toolhead') == {
        'print_stats': ['state'],
        'heater_generic chamber': ['target', 'temperature'],
        'toolhead': None}
    # The same object twice: fields merge; once without fields: all of them
    assert p('a:x, a:y') == {'a': ['x', 'y']}
    assert p('a:x\na') == {'a': None}
    for bad in ('', ' , ', ':x', 'a:', 'a:x|', 'a:x y'):
        with pytest.raises(ValueError):
            p(bad)
    with pytest.raises(ValueError):
        p(','.join('o%d' % i for i in range(subscriptions.MAX_OBJECTS + 1)))
    with pytest.raises(ValueError):
        subscriptions.check_followable({'router': None})


def test_merged_request_is_the_union_of_every_subscription():
    s = SubscriptionSet()
    assert s.add(Subscription('A', {'print_stats': ['state']}))
    assert s.add(Subscription('B', {'print_stats': ['filename'],
                                    'toolhead': None}))
    assert s.merged() == {'print_stats': ['filename', 'state'],
                          'toolhead': None}
    # Same callback: replaced, not added
    assert not s.add(Subscription('B', {'print_stats': ['filename'],
                                        'toolhead': None}))
    assert len(s) == 2
    assert s.remove(('', 'B'))
    assert s.merged() == {'print_stats': ['state']}


def test_snapshot_gives_fresh_subscriptions_everything_and_others_changes():
    s = SubscriptionSet()
    a = Subscription('A', {'print_stats': ['state', 'filename']})
    s.add(a)
    first = s.apply_snapshot({'print_stats': {'state': 'printing',
                                              'filename': 'x.gcode'}})
    assert first == [(a, {'print_stats': {'state': 'printing',
                                          'filename': 'x.gcode'}})]
    # A resubscription without a change: nothing for A...
    assert s.apply_snapshot({'print_stats': {'state': 'printing',
                                             'filename': 'x.gcode'}}) == []
    # ...but a new subscription gets the full state, and after a
    # reconnection (mark_all_fresh) everyone does
    b = Subscription('B', {'print_stats': ['state']})
    s.add(b)
    out = s.apply_snapshot({'print_stats': {'state': 'paused',
                                            'filename': 'x.gcode'}})
    assert out == [(a, {'print_stats': {'state': 'paused'}}),
                   (b, {'print_stats': {'state': 'paused'}})]
    s.mark_all_fresh()
    out = s.apply_snapshot({'print_stats': {'state': 'paused',
                                            'filename': 'x.gcode'}})
    assert [sub for sub, values in out] == [a, b]
    assert out[0][1] == {'print_stats': {'state': 'paused',
                                         'filename': 'x.gcode'}}


def test_delta_goes_to_the_subscriptions_that_follow_it():
    s = SubscriptionSet()
    a = Subscription('A', {'print_stats': ['state']})
    b = Subscription('B', {'toolhead': None})
    s.add(a)
    s.add(b)
    s.apply_snapshot({})
    assert s.apply_delta({'toolhead': {'x': 1}}) == [(b, {'toolhead': {'x': 1}})]
    assert s.apply_delta({'print_stats': {'filename': 'y'}}) == []
    # An object the peer answered for is in the mirror, even without a
    # followed field (Jinja then reads its fields as undefined, not fails)
    assert s.mirror == {'toolhead': {'x': 1}, 'print_stats': {}}


def test_mirror_keeps_followed_fields_only_and_new_versions():
    s = SubscriptionSet()
    s.add(Subscription('A', {'o': ['x', 'y']}))
    v = s.version
    s.apply_snapshot({'o': {'x': 1, 'y': 'a\nb', 'z': 3}, 'other': {'q': 1}})
    assert s.mirror == {'o': {'x': 1, 'y': 'a\nb'}} and s.version > v
    copy = s.mirror_copy()
    copy['o']['x'] = 99
    assert s.mirror['o']['x'] == 1
    s.add(Subscription('B', {'o': ['x']}))
    v = s.version
    s.remove(('', 'A'))
    assert s.mirror == {'o': {'x': 1}} and s.version > v


def test_limits_and_config_subscriptions():
    s = SubscriptionSet()
    s.add(Subscription('CFG', {'o': None}, from_config=True))
    with pytest.raises(ValueError) as e:
        s.add(Subscription('CFG', {'p': None}))
    assert 'set in the config' in str(e.value)
    for i in range(subscriptions.MAX_SUBSCRIPTIONS - 1):
        s.add(Subscription('CB%d' % i, {'o': None}))
    with pytest.raises(ValueError):
        s.add(Subscription('ONE_MORE', {'o': None}))
    # Replacing an existing one is no new subscription
    s.add(Subscription('CB0', {'p': None}))
    # Per served peer: another key space
    s2 = SubscriptionSet()
    s2.add(Subscription('CFG', {'o': None}, from_config=True))
    s2.add(Subscription('CFG', {'o': None}, runs_on='plain'))
    assert len(s2) == 2


def test_callback_parameters_are_named_as_the_old_bridge_named_them():
    params = subscriptions.callback_params('main', {
        'heater_generic chamber': {'temperature': 44.5},
        'print_stats': {'state': 'printing', 'info': {'layer': 3},
                        'done': True, 'none': None}})
    assert params == {
        'HEATER_GENERIC_CHAMBER_TEMPERATURE': '44.5',
        'PRINT_STATS_STATE': 'printing', 'PRINT_STATS_INFO': '{"layer":3}',
        'PRINT_STATS_DONE': 'True', 'PRINT_STATS_NONE': 'None',
        'PRINTER': 'main'}


# Events

def test_event_names_are_case_free_and_bounded():
    assert events.check_event(' Filament_Loaded ') == 'filament_loaded'
    assert events.check_event('ace:feed/done-1.x') == 'ace:feed/done-1.x'
    for bad in ('', 'a b', 'x' * 65, 5, None, 'é'):
        assert events.check_event(bad) is None


def test_handler_parses_one_command_with_parameters():
    h = events.Handler('e', 'on_feed  LANE={lane}  MODE="a b"')
    assert h.command == 'ON_FEED'
    assert h.params == [('LANE', '{lane}'), ('MODE', 'a b')]
    assert h.key == events.Handler('e', 'ON_FEED LANE={lane} MODE="a b"').key
    for bad in ('', '=x', 'CMD notkv', 'CMD "unclosed'):
        with pytest.raises(ValueError):
            events.Handler('e', bad)
    # Free text (M118, RESPOND) gets the way to do it
    with pytest.raises(ValueError) as e:
        events.Handler('e', 'M118 got foo {lane}')
    assert "'got' is not KEY=VALUE" in str(e.value)
    assert "call a macro that prints it" in str(e.value)
    webhook = events.Handler('e', 'printer/gcode/script', 'plain', 'webhook')
    assert webhook.command == 'printer/gcode/script' and not webhook.params


def test_handler_parameters_from_context_and_placeholders():
    h = events.Handler('feed', 'ON_FEED LANE={Lane} NOTE=fixed')
    params = h.build_params({'lane': 2, 'speed': 'a\nb'}, 'feed', 'afc')
    # The context as parameters, placeholders filled (keys case-free);
    # values are text here, control characters are cleaned where they go
    assert params == {'LANE': '2', 'SPEED': 'a\nb', 'NOTE': 'fixed',
                      'EVENT': 'feed', 'SOURCE': 'afc'}
    with pytest.raises(KeyError):
        h.build_params({}, 'feed', 'afc')


def test_contexts():
    assert events.parse_context('lane=2, length = 950,,') == {
        'lane': '2', 'length': '950'}
    for bad in ('lane', '=2', 'a b=1'):
        with pytest.raises(ValueError):
            events.parse_context(bad)
    assert events.check_context({'lane': 1}) == {'lane': 1}
    for bad in ([], {'a b': 1}, {5: 1}, {'event': 'x'}, {'SOURCE': 'x'}):
        with pytest.raises(ValueError):
            events.check_context(bad)


def test_handler_table_adds_once_removes_by_target_and_is_bounded():
    t = events.EventTable()
    assert t.add(events.Handler('e', 'A'))
    assert not t.add(events.Handler('e', 'a'))
    assert t.add(events.Handler('e', 'B', 'plain'))
    assert t.add(events.Handler('f', 'A'))
    assert [h.command for h in t.handlers('e')] == ['A', 'B']
    assert t.remove('e') == 1                  # this instance's only
    assert t.remove('e', 'B', 'plain') == 1
    assert [h.event for h in t.all()] == ['f']
    keep = t.handlers('f')
    assert t.remove('f', keep=keep) == 0
    for i in range(events.MAX_HANDLERS - len(t)):
        t.add(events.Handler('g', 'H%d' % i))
    with pytest.raises(ValueError):
        t.add(events.Handler('g', 'ONE_MORE'))
