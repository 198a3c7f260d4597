# Unit tests of router/peer/sansio/output.py: what a script prints on a
# peer, as this instance shows it (one cleaned line each, bounded), which
# waiting script a pushed line belongs to, and Klipper's unknown command.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import pytest
from router.common.gcode_text import has_control
from router.peer.sansio import output
from router.peer.sansio.output import (MAX_LINE, MAX_LINES, ScriptWatch,
                                       ServedWatch, Watches)

CONTROLS = ''.join(map(chr, list(range(0x20)) + list(range(0x7f, 0xa0))
                       + [0x2028, 0x2029]))


def test_every_control_character_stays_inside_its_line():
    """Only '\\n' separates Klipper's lines; no other control character
    can start one here (SECURITY.md guarantee 1)."""
    text = 'a' + 'x'.join(CONTROLS.replace('\n', '')) + 'b'
    lines = output.console_lines(text + '\n!! M112\r\n\x00ok')
    assert len(lines) == 3
    assert not any(has_control(l) for l in lines)
    assert lines[1:] == ['!! M112', 'ok']


@pytest.mark.parametrize('response, want', [
    ('// Klipper state: Ready', ['Klipper state: Ready']),
    ('// a\n// b', ['a', 'b']),
    ('echo: hi', ['echo: hi']),
    ('!! boom', ['!! boom']),
    ('//', []), ('\n\n', []), ('', []),
    (None, []), (42, []), (['// a'], [])])
def test_console_lines(response, want):
    assert output.console_lines(response) == want


@pytest.mark.parametrize('line, want', [
    ('// Unknown command:"NO_SUCH_CMD"', 'Unknown command:"NO_SUCH_CMD"'),
    ('Unknown command:"G999"', 'Unknown command:"G999"'),
    ('// [afc] Unknown command:"X"', None),     # a peer's, shown here
    ('// Router: script failed: Unknown command:"X"', None),
    ('echo: Unknown command:"X"', None),
    ('// Unknown command', None)])
def test_unknown_command(line, want):
    assert output.unknown_command(line) == want


def test_script_watch_bounds_lines_and_their_length():
    w = ScriptWatch(show=print)
    shown = []
    for i in range(MAX_LINES + 50):
        shown += w.take('echo: %d' % (i,))
    assert shown[:MAX_LINES] == ['echo: %d' % (i,) for i in range(MAX_LINES)]
    assert len(shown) == MAX_LINES + 1 and 'more output not shown' in shown[-1]
    w = ScriptWatch(show=print)
    (line,) = w.take('y' * 5000)
    assert len(line) == MAX_LINE and line.endswith('...')


def test_script_watch_finds_the_first_unknown_command_even_unshown():
    w = ScriptWatch(show=None)
    for i in range(MAX_LINES + 10):
        assert w.take('echo: %d' % (i,)) == []
    w.take('// Unknown command:"A"\n// Unknown command:"B"')
    assert w.unknown == 'Unknown command:"A"'


def test_served_watch_pushes_one_line_more_than_shown_then_nothing():
    sent = ServedWatch(send=print)
    pushed = [sent.take('echo: %d' % (i,)) for i in range(MAX_LINES + 10)]
    assert pushed[:MAX_LINES + 1] == ['echo: %d' % (i,)
                                      for i in range(MAX_LINES + 1)]
    assert pushed[MAX_LINES + 1:] == [None] * 9
    sent.take('// Unknown command:"Z"')
    assert sent.unknown == 'Unknown command:"Z"'
    assert len(ServedWatch(send=print).take('x' * 10 ** 6)) == \
        output.MAX_PUSH
    quiet = ServedWatch()
    assert quiet.take('// Unknown command:"Q"') is None
    assert quiet.unknown == 'Unknown command:"Q"'


def test_watches_route_tagged_pushes_by_call_and_plain_ones_in_order():
    ws = Watches()
    a, wa = ws.open(print, tagged=False)
    b, wb = ws.open(print, tagged=False)
    c, wc = ws.open(print, tagged=True)
    # A Klipper without the module: the oldest unanswered script
    assert ws.take({'response': 'one'}) == (wa, ['one'])
    ws.close(a)
    assert ws.take({'response': 'two'}) == (wb, ['two'])
    # A tagged push goes to its call only, never to an untagged one
    assert ws.take({'call': c, 'response': 'three'}) == (wc, ['three'])
    assert ws.take({'call': b, 'response': 'x'}) == (None, [])
    for bad in ({'call': 'c', 'response': 'x'}, {'call': True},
                {'call': [c]}, {'call': 999}, None, [], 'x'):
        assert ws.take(bad) == (None, [])
    ws.close(b)
    ws.close(c)
    assert ws.take({'response': 'late'}) == (None, [])
    assert ws.close(c) is None

