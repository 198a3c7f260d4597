# Test-only klippy extras module: how late a periodic reactor timer fires.
# [lateness_probe] in a test config; read printer.lateness_probe, reset
# with the endpoint lateness_probe/reset. Installed by the test harness.
# Also PROBE_MARK SEQ=n: notes when it ran (CLOCK_MONOTONIC_RAW, which
# every process shares), read back with the endpoint lateness_probe/marks.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import time


class LatenessProbe:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.reactor = self.printer.get_reactor()
        self.interval = config.getfloat('interval', .005, above=0.)
        self.samples = []
        self.waketime = None
        self.timer = self.reactor.register_timer(self._tick)
        self.printer.register_event_handler('klippy:ready', self._start)
        webhooks = self.printer.lookup_object('webhooks')
        webhooks.register_endpoint('lateness_probe/reset', self._reset)
        webhooks.register_endpoint('lateness_probe/marks', self._marks)
        self.marks = {}
        self.printer.lookup_object('gcode').register_command(
            'PROBE_MARK', self.cmd_PROBE_MARK,
            desc="Note when this ran: PROBE_MARK SEQ=<n>")

    def _start(self):
        self.waketime = self.reactor.monotonic() + self.interval
        self.reactor.update_timer(self.timer, self.waketime)

    def _tick(self, eventtime):
        now = self.reactor.monotonic()
        if len(self.samples) < 200000:
            self.samples.append(now - self.waketime)
        self.waketime = now + self.interval
        return self.waketime

    def cmd_PROBE_MARK(self, gcmd):
        self.marks[gcmd.get_int('SEQ')] = time.clock_gettime(
            time.CLOCK_MONOTONIC_RAW)

    def _marks(self, web_request):
        marks, self.marks = self.marks, {}
        web_request.send({'marks': {str(k): v for k, v in marks.items()}})

    def _reset(self, web_request):
        self.samples = []
        web_request.send({})

    def get_status(self, eventtime):
        s = sorted(self.samples)
        if not s:
            return {'count': 0, 'p50': 0., 'p99': 0., 'max': 0.}
        return {'count': len(s), 'p50': s[len(s) // 2],
                'p99': s[min(len(s) - 1, int(len(s) * .99))], 'max': s[-1]}


def load_config(config):
    return LatenessProbe(config)
