# Text helpers for G-code parameters: scripts, names, numbers, without I/O
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import math, re

NAME_RE = re.compile(r'^[a-z0-9][a-z0-9_-]*$')
MACRO_RE = re.compile(r'^[A-Z_][A-Z0-9_]{0,99}$')


def check_name(name):
    """Returns the canonical (lower case) instance name or None."""
    if not isinstance(name, str):
        return None
    name = name.strip().lower()
    if len(name) > 64 or not NAME_RE.match(name):
        return None
    return name


# Klipper splits scripts into lines on '\n' only, but C1 controls and the
# Unicode line separators end a line for str.splitlines() and for consoles.
_CONTROL_RE = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029]')


def clean_text(value):
    """The one rule for text from another instance that becomes a G-code
    parameter or a console line here: control characters (newline, CR,
    NUL, ...) become spaces, every other character stays exact."""
    text = value if isinstance(value, str) else str(value)
    return _CONTROL_RE.sub(' ', text)


def has_control(text):
    return _CONTROL_RE.search(text) is not None


def parse_seconds(text, minimum=0.001, maximum=86400.):
    """Returns a finite number of seconds or None (nan/inf/garbage)."""
    try:
        value = float(text)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(value) or value < minimum or value > maximum:
        return None
    return value


def quote_value(value):
    """A parameter value for a G-code line that cannot add a command or a
    parameter: control characters (newlines) become spaces, and the value
    is single-quoted, each single quote of it written "'" between two
    quoted parts. Klipper's shlex reads it back exactly, and so does the
    parser of Snapmaker's U1 fork, which knows quotes but no backslash
    escapes (a '\\"' inside double quotes ends them there). Only for lines
    that must be text (native commands, peers without the module); macros
    here get their parameters without any line."""
    text = clean_text(value)
    if text and re.match(r'^[A-Za-z0-9_.:+/-]+$', text):
        return text
    return "'%s'" % (text.replace("'", "'\"'\"'"),)


def command_line(command, params):
    return ' '.join([command] + ['%s=%s' % (k, quote_value(v))
                                 for k, v in params.items()])
