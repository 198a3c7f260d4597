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


def test_decoder_splits_frames_across_reads():
    d = framing.FrameDecoder(100)
    assert d.feed(b'{"a":1}\x03{"b"') == [{'a': 1}]
    assert d.feed(b':2}') == []
    msgs = d.feed(b'\x03\x03{"c":NaN}\x03')
    assert msgs[0] == {'b': 2} and len(msgs) == 2
    # Stdlib-json peers send a bare NaN token: accepted
    assert msgs[1]['c'] != msgs[1]['c']


@pytest.mark.parametrize('data', [
    b'not json\x03', b'[1,2]\x03', b'"text"\x03', b'\xff\xfe\x03',
    b'[' * 100000 + b']' * 100000 + b'\x03',
])
def test_decoder_rejects_garbage(data):
    with pytest.raises(framing.ProtocolError):
        framing.FrameDecoder(1 << 30).feed(data)


def test_decoder_bounds_frames_with_and_without_terminator():
    d = framing.FrameDecoder(10)
    with pytest.raises(framing.ProtocolError):
        d.feed(b'x' * 11)
    d = framing.FrameDecoder(10)
    d.feed(b'x' * 6)
    with pytest.raises(framing.ProtocolError):
        d.feed(b'x' * 6)
    with pytest.raises(framing.ProtocolError):
        framing.FrameDecoder(10).feed(b'{"a":"0123456789"}\x03')


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


def test_unescape_script():
    u = gcode_text.unescape_script
    assert u('G28') == 'G28'
    assert u(r'G28\nG1 X10') == 'G28\nG1 X10'
    assert u(r'M117 a\\nb') == 'M117 a\\nb'
    assert u('trailing\\') == 'trailing\\'
    assert u(r'\t stays') == r'\t stays'


def test_names_and_seconds():
    assert gcode_text.check_name(' LED ') == 'led'
    assert gcode_text.check_name('afc-2_x') == 'afc-2_x'
    for bad in ('', 'a b', '-x', 'x;y', 'é', None, 'x' * 65, 5):
        assert gcode_text.check_name(bad) is None
    assert gcode_text.parse_seconds('2.5') == 2.5
    for bad in ('nan', 'inf', '-1', '0', 'x', None, '1e9'):
        assert gcode_text.parse_seconds(bad) is None


def test_decoder_refuses_deep_nesting_it_would_not_encode_again():
    ok = b'{"a":' + b'[' * 30 + b']' * 30 + b'}\x03'
    assert framing.FrameDecoder(1 << 20).feed(ok)
    deep = b'{"a":' + b'[' * 200 + b'1' + b']' * 200 + b'}\x03'
    with pytest.raises(framing.ProtocolError) as e:
        framing.FrameDecoder(1 << 20).feed(deep)
    assert 'deeper than' in str(e.value)
    assert framing.depth({'a': [{'b': 1}, []]}) == 3
