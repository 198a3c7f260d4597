# Runs G-code on this instance for the router: hooks and callbacks
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections, logging

MAX_QUEUED_JOBS = 1000
SLICE = .002          # s of work before the drain yields to the reactor
DROP_REPORT_INTERVAL = 5.


class LocalRunner:
    """One job at a time, in order, from a reactor callback (never from an
    fd callback, never inside a G-code handler: run_script there would
    deadlock the G-code mutex). Errors are reported, never raised."""
    def __init__(self, printer):
        self.printer = printer
        self.reactor = printer.get_reactor()
        self.gcode = printer.lookup_object('gcode')
        self._jobs = collections.deque()
        self._running = False
        self._stopped = False
        self.dropped = 0
        self._reported_drops = 0
        self._last_drop_report = -DROP_REPORT_INTERVAL

    def stop(self):
        self._stopped = True
        self._jobs.clear()

    def find_macro(self, name):
        """The gcode_macro object whose command is NAME, or None."""
        uname = name.upper()
        for full_name, obj in self.printer.lookup_objects('gcode_macro'):
            parts = full_name.split(None, 1)
            if len(parts) == 2 and parts[1].upper() == uname:
                return obj
        return None

    def run_script(self, script, what, on_done=None):
        """on_done(error) is called once the script ran (error None) or
        failed (the error text)."""
        self._queue(('script', script, on_done, what))

    def run_template(self, template, what):
        """Rendered when it runs, so it sees the printer state of then."""
        self._queue(('template', template, None, what))

    def call_macro(self, name, params, what, missing_ok=False):
        """Calls macro NAME with params as given: the values never pass the
        G-code parser, so no text in them can add commands or parameters."""
        self._queue(('macro', name, (params, missing_ok), what))

    def _queue(self, job):
        if self._stopped:
            return
        if len(self._jobs) >= MAX_QUEUED_JOBS:
            self.dropped += 1
            self._report_drops()
            if job[0] == 'script' and job[2] is not None:
                job[2]("this instance's router G-code queue is full")
            return
        self._jobs.append(job)
        if not self._running:
            self._running = True
            self.reactor.register_callback(self._drain)

    def _report_drops(self):
        # Rate limited: a flood must not turn into a flood of messages
        now = self.reactor.monotonic()
        if now - self._last_drop_report < DROP_REPORT_INTERVAL:
            return
        self._last_drop_report = now
        count = self.dropped - self._reported_drops
        self._reported_drops = self.dropped
        self.report("G-code queue full (%d waiting): %d callback(s) or"
                    " handler(s) dropped" % (MAX_QUEUED_JOBS, count))

    def _drain(self, eventtime):
        reactor = self.reactor
        slice_end = reactor.monotonic() + SLICE
        try:
            while self._jobs and not self._stopped:
                if reactor.monotonic() > slice_end:
                    # Let timers and fds run between jobs: back-to-back
                    # macros would otherwise stall the reactor for as long
                    # as the queue is.
                    reactor.pause(reactor.NOW)
                    slice_end = reactor.monotonic() + SLICE
                    continue
                kind, name, extra, what = self._jobs.popleft()
                on_done = extra if kind == 'script' else None
                error = None
                try:
                    if kind == 'script':
                        self.gcode.run_script(name)
                    elif kind == 'template':
                        script = name.render()
                        if script.strip():
                            self.gcode.run_script(script)
                    else:
                        self._run_macro(name, extra[0], extra[1], what)
                except self.printer.command_error as e:
                    error = str(e)
                except Exception as e:
                    logging.exception("router: %s", what)
                    error = "internal error %s" % (type(e).__name__,)
                if on_done is not None:
                    try:
                        on_done(error)
                    except Exception:
                        logging.exception("router: %s", what)
                elif error is not None:
                    self.report("%s failed: %s" % (what, error))
        finally:
            self._running = False

    def _run_macro(self, name, params, missing_ok, what):
        macro = self.find_macro(name)
        if macro is None:
            if not missing_ok:
                self.report("%s failed: no macro named %s" % (what, name))
            return
        if self.printer.get_state_message()[1] != 'ready':
            logging.info("router: %s skipped, printer not ready", what)
            return
        line = name.upper() + ''.join(
            ' %s=%s' % (k, _show(v)) for k, v in params.items())
        gcmd = self.gcode.create_gcode_command(name.upper(), line,
                                               dict(params))
        with self.gcode.get_mutex():
            macro.cmd(gcmd)

    def report(self, msg):
        logging.info("router: %s", msg)
        try:
            self.gcode.respond_raw("!! Router: %s" % (msg.strip(),))
        except Exception:
            logging.exception("router: cannot report error")


def _show(value):
    # For the command line shown in logs only; params carry the real value
    text = str(value)
    if not text or any(c in text for c in ' \t\n"\';#*='):
        return repr(text)
    return text
