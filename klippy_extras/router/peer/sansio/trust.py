# Who asks this instance to act, and what it may do here. No I/O.
#
# Three kinds of callers reach this instance:
# - this instance itself, and API clients that do not say they are a router
#   instance (Moonraker, scripts): they already have this instance's whole
#   authority through Klipper's own gcode/script, so nothing is withheld;
# - another instance, known by the name its router gives in router/info, or
#   a Klipper without the module that this instance serves: what its
#   [router NAME] section allows, here and through here;
# - an instance that gives a name this config does not list: nothing.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.

ACTIONS = ('gcode', 'query', 'subscribe', 'events')
ALL = frozenset(ACTIONS)


class Refused(Exception):
    """The caller may not do this here; the text says why and the fix."""


class Caller:
    LOCAL, INSTANCE, SERVED, UNKNOWN = 'local', 'instance', 'served', 'unknown'

    def __init__(self, kind, name, allow, here, peer=None, where=None):
        self.kind = kind
        self.where = where or "[router %s]" % (name,)   # of its allow set
        self.name = name        # the caller's instance name
        self.allow = allow      # frozenset of ACTIONS
        self.here = here        # this instance's name
        self.peer = peer        # a served peer: its callbacks run there

    @classmethod
    def local(cls, here):
        return cls(cls.LOCAL, here, ALL, here)

    @classmethod
    def instance(cls, name, allow, here, where=None):
        return cls(cls.INSTANCE, name, frozenset(allow), here, where=where)

    @classmethod
    def served(cls, peer, here):
        return cls(cls.SERVED, peer.name, frozenset(peer.allow), here, peer)

    @classmethod
    def unknown(cls, name, here):
        return cls(cls.UNKNOWN, name, frozenset(), here)

    def require(self, action):
        """Raises Refused unless the caller may do action here."""
        if action in self.allow:
            return
        if self.kind == self.UNKNOWN:
            raise Refused(unknown_text(self.here, self.name))
        raise Refused(
            "'%s' does not accept %s from '%s' (allow: %s in %s on"
            " '%s')" % (self.here, action, self.name,
                        ', '.join(sorted(self.allow)) or 'nothing',
                        self.where, self.here))

    def require_callback_here(self):
        """A callback macro that runs on this instance is G-code here,
        unless the caller is this instance or a served peer (whose
        callbacks run on that peer)."""
        if self.peer is None:
            self.require('gcode')


def unknown_text(here, name):
    return ("'%s' does not know instance '%s': add [router %s] to %s's"
            " config (with its socket and allow:)" % (here, name, name, here))
