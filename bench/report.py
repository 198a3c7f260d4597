# How every benchmark reports: the command, one line per figure, one line
# per target (met or MISSED), and an exit status that is 1 on any miss.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, shlex, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'support'))


class Report:
    def __init__(self, title):
        self.misses = []
        print("# %s" % (title,))
        print("command: %s" % (' '.join(shlex.quote(a) for a in sys.argv),))
        sys.stdout.flush()

    def figure(self, name, **values):
        print("figure %s: %s" % (name, ', '.join(
            '%s=%s' % (k, ('%.3f' % v) if isinstance(v, float) else v)
            for k, v in values.items())))
        sys.stdout.flush()

    def target(self, name, value, limit, ok, unit=''):
        """A target: value against limit; ok says whether it was met."""
        print("target %s: %s (%.3f%s, limit %.3f%s)" % (
            name, 'met' if ok else 'MISSED', value, unit, limit, unit))
        if not ok:
            self.misses.append(name)
        sys.stdout.flush()

    def at_most(self, name, value, limit, unit=''):
        self.target(name, value, limit, value <= limit, unit)

    def at_least(self, name, value, limit, unit=''):
        self.target(name, value, limit, value >= limit, unit)

    def finish(self):
        if self.misses:
            print("MISSED: %s" % (', '.join(self.misses),))
            sys.exit(1)
        print("all targets met")
        sys.exit(0)
