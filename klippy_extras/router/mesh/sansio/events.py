# Mesh events: handlers, contexts and the parameters a handler gets. No I/O.
#
# A handler is one command, 'MACRO [KEY=VALUE ...]'. Old-bridge style
# {key} placeholders in its values are filled from the event's context, and
# the context itself is added as parameters. Values never pass through a
# G-code line when the command is a macro, so no context text can add a
# command or a parameter.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import re, shlex
from ...peer.sansio.subscriptions import param_value

EVENT_RE = re.compile(r'^[a-z0-9_][a-z0-9_.:/-]{0,63}$')
KEY_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]{0,63}$')
PLACEHOLDER_RE = re.compile(r'\{([A-Za-z_][A-Za-z0-9_]*)\}')
RESERVED = ('EVENT', 'SOURCE')
MAX_HANDLERS = 200


def check_event(name):
    """Event names are case-insensitive: the canonical form or None."""
    if not isinstance(name, str):
        return None
    name = name.strip().lower()
    return name if EVENT_RE.match(name) else None


class Handler:
    """What runs for an event: command with parameter templates, on this
    instance (target None) or on a peer without the module (target)."""
    def __init__(self, event, gcode, target=None, kind='gcode'):
        self.event = event
        self.gcode = ' '.join(gcode.split())
        self.target = target
        self.kind = kind
        if kind == 'webhook':
            self.command, self.params = self.gcode, []
            return
        try:
            words = shlex.split(self.gcode)
        except ValueError as e:
            raise ValueError("GCODE '%s': %s" % (gcode, e))
        if not words:
            raise ValueError("GCODE is empty")
        self.command = words[0].upper()
        if not KEY_RE.match(self.command):
            raise ValueError("GCODE '%s' does not start with a command"
                             % (gcode,))
        self.params = []
        for word in words[1:]:
            key, sep, value = word.partition('=')
            if not sep or not KEY_RE.match(key):
                raise ValueError(
                    "GCODE '%s': '%s' is not KEY=VALUE (a handler passes"
                    " KEY=VALUE parameters only; for free text, call a"
                    " macro that prints it, e.g. GCODE=\"SAY_LANE"
                    " LANE={lane}\" with RESPOND MSG=... in SAY_LANE)"
                    % (gcode, word))
            self.params.append((key.upper(), value))

    @property
    def key(self):
        # Command names are case-insensitive in G-code; values are not
        return (self.event, self.command, tuple(self.params), self.target,
                self.kind)

    def build_params(self, context, event, source):
        """Parameters for this handler, all strings. Raises KeyError for a
        placeholder the context does not have."""
        ctx = context_lookup(context)
        params = {}
        for key, value in context.items():
            params[str(key).upper()] = param_value(value)
        for key, template in self.params:
            params[key] = fill(template, ctx)
        params['EVENT'] = event
        params['SOURCE'] = source
        return params


def context_lookup(context):
    return {str(k).lower(): param_value(v) for k, v in context.items()}


def fill(template, ctx):
    def sub(m):
        key = m.group(1).lower()
        if key not in ctx:
            raise KeyError(m.group(1))
        return ctx[key]
    return PLACEHOLDER_RE.sub(sub, template)


def parse_context(text):
    """The old bridge's CONTEXT="k=v,k=v". Raises ValueError."""
    out = {}
    for item in text.split(','):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition('=')
        key = key.strip()
        if not sep or not KEY_RE.match(key):
            raise ValueError("'%s' is not key=value" % (item,))
        out[key] = value.strip()
    return out


def check_context(context):
    """A context from a peer or an API client: a dict of plain values."""
    if not isinstance(context, dict):
        raise ValueError("context must be an object")
    for key in context:
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise ValueError("context key %.40r is not a name" % (key,))
        if key.upper() in RESERVED:
            raise ValueError("context key '%s' is reserved" % (key,))
    return context


class EventTable:
    def __init__(self):
        self._handlers = {}   # key -> Handler, in insertion order

    def __len__(self):
        return len(self._handlers)

    def add(self, handler):
        """False when the same handler was already there."""
        if handler.key in self._handlers:
            return False
        if len(self._handlers) >= MAX_HANDLERS:
            raise ValueError("too many event handlers (%d)" % (MAX_HANDLERS,))
        self._handlers[handler.key] = handler
        return True

    def remove(self, event, gcode=None, target=None, keep=()):
        """Removes the handlers of event (with that gcode) placed for
        target; returns how many. Raises ValueError for a bad gcode."""
        key = None
        if gcode is not None:
            key = Handler(event, gcode, target).key
        gone = [k for k, h in self._handlers.items()
                if h.event == event and h.target == target
                and (key is None or k == key) and h not in keep]
        for k in gone:
            del self._handlers[k]
        return len(gone)

    def handlers(self, event):
        return [h for h in self._handlers.values() if h.event == event]

    def all(self):
        return list(self._handlers.values())
