# Unit tests of router/link/sansio/framing.py, without klippy
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import pytest
from router.link.sansio import framing


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
