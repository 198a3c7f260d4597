# Unit tests of router/link/sansio/rpc.py, without klippy
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import json
import pytest
from router.link.sansio import rpc


def test_tracker_resolves_each_request_once():
    t = rpc.RequestTracker(1 << 20)
    i1, f1 = t.add('info', {}, 'cb1', 10., 0)
    i2, f2 = t.add('gcode/script', {'script': 'G28'}, 'cb2', 5., 0)
    assert json.loads(f2) == {'id': i2, 'method': 'gcode/script',
                              'params': {'script': 'G28'}}
    assert i1 != i2 and len(t) == 2
    assert t.resolve({'id': i1, 'result': {'state': 'ready'}}) == (
        'cb1', {'state': 'ready'}, None)
    assert t.resolve({'id': i1, 'result': {}}) is None
    err = {'error': 'WebRequestError', 'message': 'Unknown thing\n'}
    cb, result, error = t.resolve({'id': i2, 'error': err})
    assert (cb, result, error) == ('cb2', None, 'Unknown thing')
    assert error.kind == rpc.REMOTE
    assert len(t) == 0
    # Unknown ids, wrong types, pushes: not replies
    for msg in ({'id': 999, 'result': {}}, {'id': '1', 'result': {}},
                {'id': True, 'result': {}}, {'params': {}}, {'id': None}):
        assert t.resolve(msg) is None


def test_tracker_takes_inline_only_replies_to_inline_requests():
    def safe(result, error):
        pass
    t = rpc.RequestTracker(1 << 20)
    i1, _ = t.add('x', {}, 'not marked', 10., 0)
    i2, _ = t.add('x', {}, safe, 10., 0, inline=True)
    assert t.resolve({'id': i1, 'result': {}}, only_inline=True) is None
    assert t.resolve({'id': i2, 'error': 'e'}, only_inline=True)[0] is safe
    # The refused one is still pending, for the hand-off
    assert len(t) == 1
    assert t.resolve({'id': i1, 'result': {}}) == ('not marked', {}, None)


def test_tracker_keeps_no_deadline_of_answered_requests():
    # One hop after another, or a stream of them with four in flight:
    # what the timer no longer needs is not kept
    t = rpc.RequestTracker(1 << 20)
    for i in range(1000):
        req_id, _ = t.add('x', {}, 'cb', 100. + i, 0)
        t.resolve({'id': req_id, 'result': {}})
    assert t._deadlines == []
    sent = [t.add('x', {}, 'cb', 100. + i, 0)[0] for i in range(4)]
    for i in range(4, 1000):
        t.resolve({'id': sent.pop(0), 'result': {}})
        sent.append(t.add('x', {}, 'cb', 100. + i, 0)[0])
        assert len(t._deadlines) <= 4


def test_tracker_deadlines_and_loss_have_kinds():
    t = rpc.RequestTracker(1 << 20)
    a, _ = t.add('x', {}, 'a', 5., 0)
    b, _ = t.add('x', {}, 'b', 3., 0)
    c, _ = t.add('x', {}, 'c', 7., 0)
    assert t.next_deadline(None) == 3.
    t.resolve({'id': b, 'result': {}})
    assert t.next_deadline(None) == 5.
    [(cb, error)] = t.expire(6.)
    assert cb == 'a' and error == 'timed out' and error.kind == rpc.TIMEOUT
    assert t.next_deadline(None) == 7.
    [(cb, error)] = t.fail_all('peer gone')
    assert cb == 'c' and error.kind == rpc.LOST
    assert error == 'connection lost (peer gone)'
    assert t.next_deadline('never') == 'never'


def test_tracker_flow_control_keeps_order_and_budget():
    t = rpc.RequestTracker(2000, max_in_flight=2, max_waiting=3)
    sent = [t.add('s', {'n': i}, i, 10., 0) for i in range(5)]
    # Two go out, three wait, in order; a priority request never waits
    assert [f is not None for i, f in sent] == [True, True, False, False,
                                               False]
    ping, frame = t.add('ping', {}, 'p', 10., 0, priority=True)
    assert frame is not None
    with pytest.raises(rpc.NotSent):
        t.add('s', {}, 'x', 10., 0)          # 3 already waiting
    t.resolve({'id': sent[0][0], 'result': {}})
    assert t.pump(0) == ([], [])             # the ping is in flight too
    t.resolve({'id': ping, 'result': {}})
    frames, failed = t.pump(0)
    assert [json.loads(f)['params']['n'] for f in frames] == [2] and not failed
    # A waiting request whose deadline passed is dropped, not sent
    t.expire(10.)
    assert t.pump(0) == ([], [])
    # The budget counts bytes written but unsent, plus what waits here
    t = rpc.RequestTracker(200, max_in_flight=1)
    t.add('s', {'x': 'a' * 50}, 1, 10., 0)
    t.add('s', {'x': 'b' * 50}, 2, 10., 0)
    with pytest.raises(rpc.NotSent) as e:
        t.add('s', {'x': 'c' * 50}, 3, 10., 120)
    assert 'send buffer full' in str(e.value)
    with pytest.raises(rpc.NotSent):
        t.add('s', {'x': float('nan')}, 4, 10., 0)


def test_peer_error_text_is_one_line():
    assert rpc.error_text({'message': 'boom\n!! M112\r'}) == 'boom !! M112'
    assert rpc.error_text('a\nb') == 'a b'


def test_error_text_of_odd_errors():
    assert rpc.error_text({'message': ''}) == "{'message': ''}"
    assert rpc.error_text(None) == 'None'
    assert rpc.error_text('x' * 500) == 'x' * 200
