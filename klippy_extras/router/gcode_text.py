# Text helpers for G-code parameters: scripts, names, numbers, without I/O
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


def unescape_script(text):
    """A G-code line cannot hold a newline, so SCRIPT uses the two
    characters '\\n' to separate commands; '\\\\' is a literal backslash."""
    if '\\' not in text:
        return text
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '\\' and i + 1 < n and text[i + 1] in 'n\\':
            out.append('\n' if text[i + 1] == 'n' else '\\')
            i += 2
            continue
        out.append(c)
        i += 1
    return ''.join(out)


def parse_seconds(text, minimum=0.001, maximum=86400.):
    """Returns a finite number of seconds or None (nan/inf/garbage)."""
    try:
        value = float(text)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(value) or value < minimum or value > maximum:
        return None
    return value


_CONTROL_RE = re.compile(r'[\x00-\x1f\x7f]')


def quote_value(value):
    """A parameter value for a G-code line that cannot add a command or a
    parameter: control characters (newlines) become spaces, and the value
    is double-quoted with '\\' and '"' escaped, as Klipper's shlex reads it.
    Only for lines that must be text (native commands, peers without the
    module); macros here get their parameters without any line."""
    text = _CONTROL_RE.sub(' ', str(value))
    if text and re.match(r'^[A-Za-z0-9_.:+/-]+$', text):
        return text
    return '"%s"' % (text.replace('\\', '\\\\').replace('"', '\\"'),)


def command_line(command, params):
    return ' '.join([command] + ['%s=%s' % (k, quote_value(v))
                                 for k, v in params.items()])
