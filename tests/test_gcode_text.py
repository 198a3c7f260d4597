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
    assert line == 'CB A="x M112" B="a\\" C=\\"1"'


def test_names_and_seconds():
    assert gcode_text.check_name(' LED ') == 'led'
    assert gcode_text.check_name('afc-2_x') == 'afc-2_x'
    for bad in ('', 'a b', '-x', 'x;y', 'é', None, 'x' * 65, 5):
        assert gcode_text.check_name(bad) is None
    assert gcode_text.parse_seconds('2.5') == 2.5
    for bad in ('nan', 'inf', '-1', '0', 'x', None, '1e9'):
        assert gcode_text.parse_seconds(bad) is None
