# Unit tests of the router's pure logic (no klippy, no sockets)
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import json
import pytest

from router.common import gcode_text, timers
from router.link.sansio import backoff, framing, rpc


def test_encode_is_compact_and_refuses_nan():
    assert framing.encode({'a': [1, 'é']}) == b'{"a":[1,"\\u00e9"]}'
    with pytest.raises(ValueError):
        framing.encode({'a': float('nan')})


def feed_all(splitter, data):
    return [framing.decode(f) for f in splitter.feed(data)]


def test_decoder_splits_frames_across_reads():
    d = framing.FrameSplitter(100)
    assert feed_all(d, b'{"a":1}\x03{"b"') == [{'a': 1}]
    assert feed_all(d, b':2}') == []
    msgs = feed_all(d, b'\x03\x03{"c":NaN}\x03')
    assert msgs[0] == {'b': 2} and len(msgs) == 2
    # Stdlib-json peers send a bare NaN token: accepted
    assert msgs[1]['c'] != msgs[1]['c']


def test_splitter_is_linear_in_the_bytes_fed():
    # A frame fed a byte at a time: each feed copies nothing it has seen
    d = framing.FrameSplitter(1 << 20)
    frame = b'{"a":"' + b'x' * 200000 + b'"}'
    for i in range(0, len(frame), 1000):
        assert d.feed(frame[i:i + 1000]) == []
    assert d.feed(b'\x03') == [frame]


def test_a_whole_frame_in_one_read_is_cut_like_any_other():
    d = framing.FrameSplitter(10)
    assert d.feed(b'{"a":1}\x03') == [b'{"a":1}']
    assert d.feed(b' \r\n\x03') == []
    # After a partial frame, the read ends it
    assert d.feed(b'{"a"') == []
    assert d.feed(b':2}\x03') == [b'{"a":2}']
    with pytest.raises(framing.ProtocolError):
        d.feed(b'x' * 11 + b'\x03')


@pytest.mark.parametrize('data', [
    b'not json\x03', b'[1,2]\x03', b'"text"\x03', b'\xff\xfe\x03',
    b'[' * 100000 + b']' * 100000 + b'\x03',
    b'{"a":' + b'1' * 5000 + b'}\x03',
    b'{"a":[' + b'[],' * 200000 + b'[]]}\x03',
])
def test_decoder_rejects_garbage(data):
    with pytest.raises(framing.ProtocolError):
        feed_all(framing.FrameSplitter(1 << 30), data)


def test_decoder_bounds_frames_with_and_without_terminator():
    d = framing.FrameSplitter(10)
    with pytest.raises(framing.ProtocolError):
        d.feed(b'x' * 11)
    d = framing.FrameSplitter(10)
    d.feed(b'x' * 6)
    with pytest.raises(framing.ProtocolError):
        d.feed(b'x' * 6)
    with pytest.raises(framing.ProtocolError):
        framing.FrameSplitter(10).feed(b'{"a":"0123456789"}\x03')


def test_token_budget_passes_string_heavy_frames():
    # Text (a config file's macros) is cheap to decode: a large frame of it
    # passes, while the same size of tiny arrays does not.
    text = ('gcode:\n  G1 X10 Y20 F3000\n  M117 Homing, please wait: done.'
            ' ' * 3)
    msg = {'id': 1, 'result': {'status': {'configfile': {
        'config': {'gcode_macro M%d' % i: {'gcode': text * 20}
                   for i in range(400)}}}}}
    frame = framing.encode(msg)
    assert len(frame) > 1000000
    assert framing.decode(frame) == msg
    with pytest.raises(framing.ProtocolError) as e:
        framing.check_cost(b'[' + b'[],' * 300000 + b'[]]')
    assert 'JSON tokens' in str(e.value)


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
    with pytest.raises(rpc.Refused):
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
    with pytest.raises(rpc.Refused) as e:
        t.add('s', {'x': 'c' * 50}, 3, 10., 120)
    assert 'send buffer full' in str(e.value)
    with pytest.raises(rpc.Refused):
        t.add('s', {'x': float('nan')}, 4, 10., 0)


def test_peer_error_text_is_one_line():
    assert rpc.error_text({'message': 'boom\n!! M112\r'}) == 'boom !! M112'
    assert rpc.error_text('a\nb') == 'a b'


def test_error_text_of_odd_errors():
    assert rpc.error_text({'message': ''}) == "{'message': ''}"
    assert rpc.error_text(None) == 'None'
    assert rpc.error_text('x' * 500) == 'x' * 200


def test_backoff_grows_caps_and_resets():
    b = backoff.Backoff(.1, 1., jitter=0.)
    assert [round(b.next_delay(), 3) for i in range(6)] == [
        .1, .2, .4, .8, 1., 1.]
    b.reset()
    assert b.next_delay() == .1
    j = backoff.Backoff(1., 1., jitter=.1, rng=lambda: 1.)
    assert abs(j.next_delay() - 1.1) < 1e-9
    j = backoff.Backoff(1., 1., jitter=.1, rng=lambda: 0.)
    assert abs(j.next_delay() - .9) < 1e-9


def test_clean_text_maps_every_control_character():
    c = gcode_text.clean_text
    assert c('a\nb\rc\x00d\te\x1bf\x7fg\x85h\u2028i\u2029j') == (
        'a b c d e f g h i j')
    exact = 'quotes \'"; #*= Ünïcödé \\n stays'
    assert c(exact) == exact
    assert c(12.5) == '12.5'
    assert gcode_text.has_control('x\ny') and not gcode_text.has_control(exact)
    # A G-code line built from peer text is one line, one parameter each
    line = gcode_text.command_line('CB', {'A': 'x\nM112', 'B': 'a" C="1'})
    assert '\n' not in line
    assert line == 'CB A="x M112" B="a\\" C=\\"1"'


def test_names_and_seconds():
    assert gcode_text.check_name(' LED ') == 'led'
    assert gcode_text.check_name('afc-2_x') == 'afc-2_x'
    for bad in ('', 'a b', '-x', 'x;y', 'é', None, 'x' * 65, 5):
        assert gcode_text.check_name(bad) is None
    assert gcode_text.parse_seconds('2.5') == 2.5
    for bad in ('nan', 'inf', '-1', '0', 'x', None, '1e9'):
        assert gcode_text.parse_seconds(bad) is None


def test_decoder_refuses_deep_nesting_it_would_not_encode_again():
    ok = b'{"a":' + b'[' * 31 + b']' * 31 + b'}\x03'
    assert feed_all(framing.FrameSplitter(1 << 20), ok)
    deep = b'{"a":' + b'[' * 200 + b'1' + b']' * 200 + b'}\x03'
    with pytest.raises(framing.ProtocolError) as e:
        feed_all(framing.FrameSplitter(1 << 20), deep)
    assert 'deeper than' in str(e.value)


@pytest.mark.parametrize('text,level', [
    (b'{}', 1), (b'{"a":[{"b":1},[]]}', 3), (b'{"a":"[[[[{{"}', 1),
    (b'{"a":"\\\\","b":[[]]}', 3), (b'{"a":"\\"[\\"","b":[]}', 2),
    (b'[' * 32 + b']' * 32, 32), (b'[' * 40 + b']' * 40, 33),
    (b'[[]', 33), (b'[]]', 33)])
def test_depth_is_read_from_the_bytes(text, level):
    assert framing.depth(text) == level


def test_periodic_work_of_every_link_and_instance_shares_its_moments():
    # Two links (or two instances) that set the same pace at different
    # moments wake together, always strictly later, never a whole
    # interval late
    for start in (0., 3.99, 4., 4.01, 12345.678):
        due = timers.next_due(start, 2.)
        assert start < due <= start + 2.
        assert due % 2. == 0.
    assert timers.next_due(4.01, 2.) == timers.next_due(5.9, 2.) == 6.
    assert timers.next_due(1.3, .25) == 1.5


class TimerReactor:
    """What Link uses of klippy's reactor: timers and a clock."""
    NOW, NEVER = 0., 9999999999999999.

    def monotonic(self):
        return self.now

    def __init__(self):
        self.now = 100.
        self.timers = []

    def register_timer(self, callback, waketime=NEVER):
        timer = [callback, waketime]
        self.timers.append(timer)
        return timer

    def update_timer(self, timer, waketime):
        timer[1] = waketime

    def fire(self, timer):
        """Runs a timer the way the reactor does when it is due."""
        self.now = max(self.now, timer[1])
        timer[1] = timer[0](self.now)


class SentFrames:
    connected, generation, owner = True, 1, None

    def __init__(self):
        self.frames = []

    def buffered(self):
        return 0

    def send(self, frame):
        self.frames.append(json.loads(frame))


def test_link_times_requests_out_by_the_earliest_deadline():
    from router.link.link import Link
    reactor, transport = TimerReactor(), SentFrames()
    link = Link(reactor, transport, listener=None)
    timer, = reactor.timers     # the link's only timer: its timeouts
    got = []
    def callback(result, error):
        got.append(error and error.kind)
    for method, timeout in (('a', 5.), ('b', 2.), ('c', 9.)):
        link.request(method, {}, callback, timeout, inline=True)
    ids = {f['method']: f['id'] for f in transport.frames}
    assert timer[1] == 102.
    # A reply leaves the timer where it is while others are pending: it
    # fires early, finds nothing due and sets itself to the next deadline
    assert link.take_now([b'{"id":%d,"result":{}}' % ids['b']])
    assert timer[1] == 102.
    reactor.fire(timer)
    assert got == [None] and timer[1] == 105.
    reactor.fire(timer)
    assert got == [None, rpc.TIMEOUT] and timer[1] == 109.
    # The last reply: nothing pending, no wake-up left
    assert link.take_now([b'{"id":%d,"result":{}}' % ids['c']])
    assert got == [None, rpc.TIMEOUT, None]
    assert timer[1] == reactor.NEVER
    # A new request sets it again
    link.request('d', {}, callback, 1.)
    assert timer[1] == reactor.now + 1.
