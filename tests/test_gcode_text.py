# Unit tests of router/common/gcode_text.py, without klippy
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
from router.common import gcode_text


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
    assert line == 'CB A=\'x M112\' B=\'a" C="1\''


# Values that try to end their quoting, for both ways Klippers read a line
HOSTILE = ['a" C="1', "a' C='1", 'x\\" C=1 \\"', "it's \"q\" \\ \\'",
           "''", '""', '', ' ', "=", "A=1 B=2", '\\', "'"]


def quotes_only(args):
    """Words as a parser without escapes reads them (Snapmaker's U1 fork):
    a quote opens and the same quote closes, whitespace outside quotes
    separates, every other character is kept."""
    words, word, quote = [], None, None
    for ch in args:
        if quote is not None:
            if ch == quote:
                quote = None
            else:
                word.append(ch)
        elif ch in '"\'':
            quote, word = ch, word if word is not None else []
        elif ch in ' \t':
            if word is not None:
                words.append(''.join(word))
            word = None
        else:
            word = (word or []) + [ch]
    if word is not None:
        words.append(''.join(word))
    return words


def test_quoted_values_read_back_exactly_by_both_parsers():
    import shlex
    params = {'P%d' % (i,): v for i, v in enumerate(HOSTILE)}
    line = gcode_text.command_line('CB', params)
    args = line.split(' ', 1)[1]
    for words in (shlex.split(args), quotes_only(args)):
        assert dict(w.split('=', 1) for w in words) == params, line


def test_names_and_seconds():
    assert gcode_text.check_name(' LED ') == 'led'
    assert gcode_text.check_name('afc-2_x') == 'afc-2_x'
    for bad in ('', 'a b', '-x', 'x;y', 'é', None, 'x' * 65, 5):
        assert gcode_text.check_name(bad) is None
    assert gcode_text.parse_seconds('2.5') == 2.5
    for bad in ('nan', 'inf', '-1', '0', 'x', None, '1e9'):
        assert gcode_text.parse_seconds(bad) is None
