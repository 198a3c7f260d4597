# Test-only klippy extras module: how late a periodic reactor timer fires.
# [lateness_probe] in a test config; read printer.lateness_probe, reset
# with the endpoint lateness_probe/reset. Installed by the test harness.
# Also PROBE_MARK SEQ=n: notes when it ran (CLOCK_MONOTONIC_RAW, which
# every process shares), read back with the endpoint lateness_probe/marks.
# The trace of long pauses: each sample over PAUSE late, and each garbage
# collection that took over COLLECTION (gc.callbacks), with when it began,
# on the reactor's clock, in printer.lateness_probe; with each pause the
# CPU klippy's main thread used since the tick before it. With
# stall_trace: <seconds>, a thread samples the main thread's stack when
# the timer is that late (the call that holds the reactor, by name).
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import gc, os, sys, threading, time, traceback

PAUSE = .01
COLLECTION = .005
TRACE_MAX = 1000


class LatenessProbe:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.reactor = self.printer.get_reactor()
        self.interval = config.getfloat('interval', .005, above=0.)
        self.samples = []
        self.waketime = None
        self.timer = self.reactor.register_timer(self._tick)
        self.printer.register_event_handler('klippy:ready', self._start)
        self.printer.register_event_handler('klippy:disconnect',
                                            self._disconnect)
        # [when due, how late, since the last tick, CPU, waiting for a CPU]
        self.pauses = []
        self._last = None
        self._schedstat = None
        self.collections = []     # [began, seconds, generation]
        self.stalls = []          # [when, the main thread's stack]
        self.stall_trace = config.getfloat('stall_trace', 0., minval=0.)
        self._main = threading.get_ident()
        self._sampler = None
        self._gc_began = None
        gc.callbacks.append(self._collecting)
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
        if self.stall_trace and self._sampler is None:
            self._sampler = threading.Thread(target=self._sample_stalls,
                                             daemon=True)
            self._sampler.start()

    def _sample_stalls(self):
        # One stack per stall, taken once the timer is stall_trace late
        sampled_for = None
        while self._sampler is not None:
            time.sleep(self.stall_trace / 4.)
            due = self.waketime
            if (due is None or due == sampled_for
                    or self.reactor.monotonic() - due < self.stall_trace):
                continue
            sampled_for = due
            frame = sys._current_frames().get(self._main)
            if frame is not None and len(self.stalls) < TRACE_MAX:
                stack = traceback.extract_stack(frame)[-12:]
                self.stalls.append([due, ' < '.join(
                    '%s (%s:%d)' % (f.name, os.path.basename(f.filename),
                                    f.lineno) for f in reversed(stack))])

    def _sched(self):
        """CPU seconds of klippy's main thread, and seconds it waited,
        runnable, for a CPU (schedstat; without it, thread_time and 0)."""
        if self._schedstat is None:
            try:
                self._schedstat = os.open('/proc/thread-self/schedstat',
                                          os.O_RDONLY)
            except OSError:
                self._schedstat = -1
        if self._schedstat >= 0:
            try:
                run, wait = os.pread(self._schedstat, 200, 0).split()[:2]
                return int(run) / 1e9, int(wait) / 1e9
            except (OSError, ValueError):
                pass
        return time.thread_time(), 0.

    def _disconnect(self):
        self._sampler = None
        if self._schedstat is not None and self._schedstat >= 0:
            os.close(self._schedstat)
            self._schedstat = None
        if self._collecting in gc.callbacks:
            gc.callbacks.remove(self._collecting)

    def _collecting(self, phase, info):
        now = self.reactor.monotonic()
        if phase == 'start':
            self._gc_began = now
        elif self._gc_began is not None:
            took = now - self._gc_began
            if took > COLLECTION and len(self.collections) < TRACE_MAX:
                self.collections.append(
                    [self._gc_began, took, info.get('generation')])
            self._gc_began = None

    def _tick(self, eventtime):
        now = self.reactor.monotonic()
        # CPU of klippy's main thread since the last tick: near the
        # wall time when klippy was busy, far below it when it was not
        # running (another process, the kernel, the hypervisor)
        cpu, queued = self._sched()
        late = now - self.waketime
        if len(self.samples) < 200000:
            self.samples.append(late)
        if (late > PAUSE and self._last is not None
                and len(self.pauses) < TRACE_MAX):
            self.pauses.append([self.waketime, late, now - self._last[0],
                                cpu - self._last[1], queued - self._last[2]])
        self._last = (now, cpu, queued)
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
        self.pauses = []
        self.collections = []
        self.stalls = []
        web_request.send({})

    def get_status(self, eventtime):
        s = sorted(self.samples)
        trace = {'pauses': [list(p) for p in self.pauses],
                 'collections': [list(c) for c in self.collections],
                 'stalls': [list(t) for t in self.stalls]}
        if not s:
            return dict(trace, count=0, p50=0., p99=0., max=0.)
        return dict(trace, count=len(s), p50=s[len(s) // 2],
                    p99=s[min(len(s) - 1, int(len(s) * .99))], max=s[-1])


def load_config(config):
    return LatenessProbe(config)
