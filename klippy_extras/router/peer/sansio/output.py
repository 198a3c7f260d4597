# What a script sent to a peer prints there, without I/O: its console
# lines as this instance shows them, the bounds, and Klipper's "Unknown
# command" answer, which it prints and does not return as an error
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections, re
from ...common.gcode_text import clean_text

MAX_LINES = 100     # console lines of one call shown here
MAX_LINE = 300      # characters of one of them
MAX_PUSH = 64 * 1024   # characters of one output message a server pushes

# Klipper's answer to a command it does not know: an info line
# ('// Unknown command:"FOO"', gcode.py cmd_default), not an error
_UNKNOWN_RE = re.compile(r'^(?://\s*)?(Unknown command:\s*".*")$')


def unknown_command(line):
    """The 'Unknown command:"X"' text of one output line, or None."""
    m = _UNKNOWN_RE.match(line.strip())
    return m.group(1) if m else None


def console_lines(response):
    """An output message (Klipper separates its lines with '\\n') as one
    line each: control characters are spaces (SECURITY.md guarantee 1),
    respond_info's '// ' is left off, empty lines are dropped."""
    if not isinstance(response, str):
        return []
    lines = []
    for line in response.split('\n'):
        line = clean_text(line).strip()
        if line.startswith('//'):
            line = line[2:].strip()
        if line:
            lines.append(line)
    return lines


class ScriptWatch:
    """The output of one script: the lines to show (at most MAX_LINES,
    each at most MAX_LINE characters, then one line saying more was cut)
    and the first Unknown command it printed."""
    def __init__(self, show=True):
        self.show = show
        self.unknown = None
        self.lines = 0
        self.cut = False

    def take(self, response):
        """The console lines to show for one output message."""
        shown = []
        for line in console_lines(response):
            if self.unknown is None:
                self.unknown = unknown_command(line)
            if not self.show or self.cut:
                continue
            if self.lines >= MAX_LINES:
                self.cut = True
                shown.append("... more output not shown (at most %d lines"
                             " per call)" % (MAX_LINES,))
                continue
            self.lines += 1
            if len(line) > MAX_LINE:
                line = line[:MAX_LINE - 3] + '...'
            shown.append(line)
        return shown


class ServedWatch:
    """The serving side of one script a peer sent: which output messages
    go back to it (up to MAX_LINES lines and one more, so the caller knows
    there was more), and the first Unknown command."""
    def __init__(self, send=None):
        self.send = send     # send(response), or None: nothing is pushed
        self.unknown = None
        self.lines = 0

    def take(self, msg):
        """The message to push, or None."""
        if not isinstance(msg, str):
            return None
        if self.unknown is None:
            for line in msg.split('\n'):
                self.unknown = unknown_command(line)
                if self.unknown is not None:
                    break
        if self.send is None or self.lines > MAX_LINES:
            return None
        self.lines += msg.count('\n') + 1
        return msg[:MAX_PUSH]


class Watches:
    """The scripts in flight to one peer whose output this instance
    watches. A peer with the module (version 0.4 and later) tags its
    pushes with the call's number; a Klipper without it pushes its whole
    console, and what arrives belongs to the oldest script not answered
    yet (a connection's scripts run, and are answered, in order)."""
    def __init__(self):
        self._watches = collections.OrderedDict()   # call -> (watch, tagged)
        self._next = 0
        self.subscribed = False    # gcode/subscribe_output sent on this link

    def open(self, show, tagged):
        """A new watch; returns (call number, ScriptWatch)."""
        self._next += 1
        watch = ScriptWatch(show)
        self._watches[self._next] = (watch, tagged)
        return self._next, watch

    def close(self, call):
        entry = self._watches.pop(call, None)
        return entry[0] if entry is not None else None

    def connection_changed(self):
        self.subscribed = False

    def take(self, params):
        """A pushed output message: (its watch, the lines to show), or
        (None, []) when no script waits for it."""
        if not isinstance(params, dict):
            return None, []
        call = params.get('call')
        if call is None:
            entry = next((e for e in self._watches.values() if not e[1]),
                         None)
        elif isinstance(call, int) and not isinstance(call, bool):
            entry = self._watches.get(call)
            entry = entry if entry is not None and entry[1] else None
        else:
            entry = None
        if entry is None:
            return None, []
        return entry[0], entry[0].take(params.get('response'))
