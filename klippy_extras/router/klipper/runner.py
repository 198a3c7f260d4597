# Runs G-code on this instance for the router: hooks, callbacks, handlers
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections, logging
from ..common.gcode_text import clean_text
from ..common.timers import drop_timer

MAX_QUEUED_JOBS = 1000
SLICE = .002          # s of work before the drain yields to the reactor
DROP_REPORT_INTERVAL = 5.
MAX_REPORT = 300      # characters of one console report
JOB_COMMAND = '_ROUTER_JOB'   # the command each job runs inside


class LocalRunner:
    """One job at a time, in order, from a reactor callback (never from an
    fd callback, never inside a G-code handler: run_now there would
    deadlock the G-code mutex). Errors are reported, never raised.
    A job is (func, on_done, what): func() runs it, holding the G-code
    mutex, and may raise a G-code error; on_done(error) is told the
    outcome, or the error is reported."""
    def __init__(self, printer, on_report=None):
        self.printer = printer
        self.reactor = printer.get_reactor()
        self.gcode = printer.lookup_object('gcode')
        self.on_report = on_report
        self._jobs = collections.deque()
        self._running = False
        self._stopped = False
        self.dropped = 0
        self._reported_drops = 0
        self._last_drop_report = -DROP_REPORT_INTERVAL
        # One timer for every drain: cheaper than a register_callback (a
        # timer made and dropped, and a completion) per job
        self._timer = self.reactor.register_timer(self._drain_event)
        self._job = None      # [func, error] of the job run_now runs
        # A Klipper that hands a failed command to an exception manager
        # (Snapmaker's U1 fork shows it on the printer's screen): jobs run
        # inside a command of their own that never fails. Elsewhere that
        # costs a line parsed per job for nothing.
        self._inside_command = printer.lookup_object(
            'exception_manager', None) is not None
        self.gcode.register_command(JOB_COMMAND, self._cmd_job, True)

    def stop(self):
        self._stopped = True
        self._jobs.clear()
        self._timer = drop_timer(self.reactor, self._timer)

    def find_macro(self, name):
        """The gcode_macro object whose command is NAME, or None."""
        uname = name.upper()
        for full_name, obj in self.printer.lookup_objects('gcode_macro'):
            parts = full_name.split(None, 1)
            if len(parts) == 2 and parts[1].upper() == uname:
                return obj
        return None

    def is_ready(self):
        return self.printer.get_state_message()[1] == 'ready'

    # What can be queued
    def run_script(self, script, what, on_done=None):
        """on_done(error) is called once the script ran (error None) or
        failed (the error text)."""
        self._queue(lambda: self.gcode.run_script_from_command(script),
                    on_done, what)

    def run_template(self, template, what):
        """Rendered when it runs, so it sees the printer state of then."""
        if template is None:
            return
        self._queue(lambda: self._run_template(template), None, what)

    def call_macro(self, name, params, what, missing_ok=False):
        """Calls macro NAME with params as given: the values never pass the
        G-code parser, so no text in them can add a parameter, and control
        characters are spaces, so none can add a line to the macro."""
        params = {k: clean_text(v) for k, v in params.items()}
        self._queue(lambda: self._run_macro(name, params, missing_ok, what),
                    None, what)

    def _queue(self, func, on_done, what):
        if self._stopped:
            return
        if len(self._jobs) >= MAX_QUEUED_JOBS:
            self.dropped += 1
            self._report_drops()
            if on_done is not None:
                on_done("this instance's router G-code queue is full")
            return
        self._jobs.append((func, on_done, what))
        if not self._running and self._timer is not None:
            self._running = True
            self.reactor.update_timer(self._timer, self.reactor.NOW)

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

    def _drain_event(self, eventtime):
        self._drain(eventtime)
        return self.reactor.NEVER

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
                func, on_done, what = self._jobs.popleft()
                error = self._run_job(func, what)
                if on_done is not None:
                    try:
                        on_done(error)
                    except Exception:
                        logging.exception("router: %s", what)
                elif error is not None:
                    self.report("%s failed: %s" % (what, error))
        finally:
            self._running = False

    def _run_job(self, func, what):
        try:
            return self.run_now(func)
        except Exception as e:
            logging.exception("router: %s", what)
            return "internal error %s" % (type(e).__name__,)

    def run_now(self, func):
        """Runs func() holding the G-code mutex; returns its error text or
        None. It runs inside a command of its own, which never fails: a
        failure is the job's (a peer's request, a handler, a callback),
        not a command this instance's user ran. Klipper answers only that
        command's failure with '!!'; Snapmaker's U1 fork also hands it to
        its exception manager, which shows it on the printer's screen."""
        job = [func, None]
        with self.gcode.get_mutex():
            if not self._inside_command:
                self._do_job(job)
                return job[1]
            self._job = job
            try:
                self.gcode.run_script_from_command(JOB_COMMAND)
            finally:
                self._job = None
        return job[1]

    def _cmd_job(self, gcmd):
        # Taken once: the job's own G-code cannot run it again
        job, self._job = self._job, None
        if job is not None:   # else typed at a console: there is no job
            self._do_job(job)

    def _do_job(self, job):
        try:
            job[0]()
        except self.printer.command_error as e:
            job[1] = str(e)
            # As for any command that failed (gcode_move takes its
            # position back): the outer command, which would, does not
            self.printer.send_event("gcode:command_error")
        except Exception as e:
            logging.exception("router: G-code job")
            job[1] = "internal error %s" % (type(e).__name__,)

    def _run_template(self, template):
        # What gcode.run_script does, in a form every template has: Kalico's
        # Python templates ('!' prefix) have no render()
        template.run_gcode_from_command()

    def _run_macro(self, name, params, missing_ok, what):
        macro = self.find_macro(name)
        if macro is None:
            if not missing_ok:
                raise self.printer.command_error("no macro named %s"
                                                 % (name,))
            return
        if not self.is_ready():
            logging.info("router: %s skipped, printer not ready", what)
            return
        line = name.upper() + ''.join(
            ' %s=%s' % (k, _show(v)) for k, v in params.items())
        gcmd = self.gcode.create_gcode_command(name.upper(), line,
                                               dict(params))
        macro.cmd(gcmd)

    def reporter(self, what, peer=None):
        """A reply callback for something sent and not waited for: its
        failure is reported ('<what> failed: <why>'), success says
        nothing."""
        def on_reply(result, error):
            if error is not None:
                self.report("%s failed: %s" % (what, error), peer)
        return on_reply

    def report(self, msg, peer=None):
        """A failure that is not the answer to a command being run: an
        informational console line ('//'), never '!!', which print hosts
        on the pty take as a firmware error (OctoPrint cancels the print)."""
        text = clean_text(msg).strip()
        if len(text) > MAX_REPORT:
            text = text[:MAX_REPORT - 3] + '...'
        logging.info("router: %s", text)
        if self.on_report is not None:
            try:
                self.on_report(text, peer)
            except Exception:
                logging.exception("router: cannot note report")
        try:
            self.gcode.respond_info("Router: %s" % (text,), log=False)
        except Exception:
            logging.exception("router: cannot report")


def _show(value):
    # For the command line shown in logs only; params carry the real value
    text = str(value)
    if not text or any(c in text for c in ' \t\n"\';#*='):
        return repr(text)
    return text
