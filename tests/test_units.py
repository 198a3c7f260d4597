# Unit tests of the router's pure logic (no klippy, no sockets)
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, sys
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'klippy_extras'))
from router import backoff, framing, gcode_text, rpc  # noqa: E402


def test_encode_is_compact_and_refuses_nan():
    assert framing.encode({'a': [1, 'é']}) == b'{"a":[1,"\\u00e9"]}\x03'
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
    frame = framing.encode(msg)[:-1]
    assert len(frame) > 1000000
    assert framing.decode(frame) == msg
    with pytest.raises(framing.ProtocolError) as e:
        framing.check_cost(b'[' + b'[],' * 300000 + b'[]]')
    assert 'JSON tokens' in str(e.value)


def test_tracker_resolves_each_request_once():
    t = rpc.RequestTracker()
    i1, m1 = t.add('info', {}, 'cb1', 10.)
    i2, m2 = t.add('gcode/script', {'script': 'G28'}, 'cb2', 5.)
    assert m2 == {'id': i2, 'method': 'gcode/script',
                  'params': {'script': 'G28'}}
    assert i1 != i2 and len(t) == 2
    assert t.resolve({'id': i1, 'result': {'state': 'ready'}}) == (
        'cb1', {'state': 'ready'}, None)
    assert t.resolve({'id': i1, 'result': {}}) is None
    err = {'error': 'WebRequestError', 'message': 'Unknown thing\n'}
    assert t.resolve({'id': i2, 'error': err}) == ('cb2', None,
                                                   'Unknown thing')
    assert len(t) == 0
    # Unknown ids, wrong types, pushes: not replies
    for msg in ({'id': 999, 'result': {}}, {'id': '1', 'result': {}},
                {'id': True, 'result': {}}, {'params': {}}, {'id': None}):
        assert t.resolve(msg) is None


def test_tracker_deadlines():
    t = rpc.RequestTracker()
    a, _ = t.add('x', {}, 'a', 5.)
    b, _ = t.add('x', {}, 'b', 3.)
    c, _ = t.add('x', {}, 'c', 7.)
    assert t.next_deadline(None) == 3.
    t.resolve({'id': b, 'result': {}})
    assert t.next_deadline(None) == 5.
    assert t.expire(6.) == [('a', 5.)]
    assert t.next_deadline(None) == 7.
    assert t.fail_all() == ['c']
    assert t.next_deadline('never') == 'never'
    t.cancel(12345)


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
