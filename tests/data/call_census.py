# Test-only klippy extras module: counts the function calls klippy's main
# thread makes (Python functions and C functions, by name) between the
# endpoints call_census/start and call_census/stop, and the garbage
# collections of each generation (start with {"calls": false} for these
# alone). For bench/hop_anatomy.py. A profile hook makes klippy several
# times slower while it counts: counts only, never times. Installed by
# the test harness.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections, gc, os, sys


class CallCensus:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.counts = collections.Counter()
        self.collections = [0, 0, 0]
        webhooks = self.printer.lookup_object('webhooks')
        webhooks.register_endpoint('call_census/start', self._start)
        webhooks.register_endpoint('call_census/stop', self._stop)

    def _profile(self, frame, event, arg):
        if event == 'call':
            code = frame.f_code
            path = code.co_filename
            self.counts['%s/%s:%s' % (os.path.basename(os.path.dirname(
                path)), os.path.basename(path), code.co_name)] += 1
        elif event == 'c_call':
            self.counts['C:' + getattr(arg, '__qualname__', '?')] += 1

    def _on_switch(self, event, args):
        # Each greenlet carries its own profile state on newer Pythons
        sys.setprofile(self._profile)

    def _start(self, web_request):
        import greenlet
        self.counts = collections.Counter()
        self.collections = [s['collections'] for s in gc.get_stats()]
        if web_request.get('calls', True):
            greenlet.settrace(self._on_switch)
            sys.setprofile(self._profile)

    def _stop(self, web_request):
        import greenlet
        sys.setprofile(None)
        greenlet.settrace(None)
        # A paused greenlet may still count, into a counter nobody reads
        counts, self.counts = self.counts, collections.Counter()
        done = [s['collections'] - c for s, c in zip(gc.get_stats(),
                                                     self.collections)]
        web_request.send({'calls': sum(counts.values()),
                          'by_name': dict(counts),
                          'collections': done})


def load_config(config):
    return CallCensus(config)
