# router/subscribe: Klipper's objects/subscribe, for peers' routers, with
# every change sent within WATCH_INTERVAL instead of at Klipper's 250 ms
# status sampling. A state that lasts 20 ms (a pause a fast filament unit
# resumes at once) reaches the peer, in order, once.
#
# A look costs a reactor wake, about 0.2 ms of CPU here: at 100 per second
# that is 2 % of a core. So the fast pace holds while G-code runs here (a
# print from the virtual SD card, a command holding the G-code mutex) and
# for ACTIVE_GRACE after, when the reactor is awake for that work anyway,
# and while a print is paused (its RESUME may be followed at once by
# another pause); an idle printer is looked at IDLE_INTERVAL apart.
#
# Same request and reply as objects/subscribe, and updates in the same
# form ({**response_template, 'params': {'eventtime', 'status'}}), so the
# peer's session takes either. One watch per connection; a new request
# replaces it, as in Klipper.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging
from ..common import endpoints
from ..common.timers import next_due
from ..common.timers import drop_timer
from .sansio import subscriptions

ENDPOINT = 'router/subscribe'
WATCH_INTERVAL = .01      # s between looks at the watched fields
SLOW_INTERVAL = .1        # when one look costs more than SLOW_COST
SLOW_COST = .002
ALWAYS = ('webhooks',)    # the Klipper state: every known instance
STATE_INTERVAL = .25      # a watch of the Klipper state only, as Klipper
IDLE_INTERVAL = .25       # no G-code running here
ACTIVE_GRACE = 2.         # s of the fast pace after G-code last ran


class Watch:
    def __init__(self, conn, objects, template):
        self.conn = conn
        self.objects = objects      # name -> list of fields, or None
        self.template = template
        self.last = {}
        # Only the Klipper state (every link has that): Klipper's pace
        self.interval = (STATE_INTERVAL if set(objects) <= set(ALWAYS)
                         else WATCH_INTERVAL)
        self.due = 0.


class Watcher:
    def __init__(self, printer, callers):
        self.callers = callers
        self.printer = printer
        self.reactor = printer.get_reactor()
        self._watches = {}          # connection -> Watch
        self._timer = None
        self._active_until = 0.
        self._mutex = self._sdcard = self._print_stats = None
        endpoints.register(printer, ENDPOINT, self._handle_subscribe)

    def stop(self):
        self._timer = drop_timer(self.reactor, self._timer)
        self._watches.clear()

    def _busy(self, eventtime):
        """Is G-code running here (or did it a moment ago), or is a print
        paused?"""
        if self._mutex is None:
            lookup = self.printer.lookup_object
            self._mutex = lookup('gcode').get_mutex()
            self._sdcard = lookup('virtual_sdcard', None)
            self._print_stats = lookup('print_stats', None)
        sdcard = self._sdcard
        if self._mutex.test() or (sdcard is not None and getattr(
                sdcard, 'is_active', lambda: False)()):
            self._active_until = eventtime + ACTIVE_GRACE
        return eventtime < self._active_until or self._paused(eventtime)

    def _paused(self, eventtime):
        stats = self._print_stats
        return stats is not None and stats.get_status(eventtime).get(
            'state') == 'paused'

    def _handle_subscribe(self, web_request):
        objects = web_request.get_dict('objects')
        template = web_request.get_dict('response_template', {})
        try:
            subscriptions.check_object_map(objects)
        except ValueError:
            raise web_request.error("Invalid argument")
        if set(objects) - set(ALWAYS):
            self.callers.check(web_request, 'subscribe')
        watch = Watch(web_request.get_client_connection(),
                      {n: None if f is None else list(f)
                       for n, f in objects.items()}, template)
        eventtime = self.reactor.monotonic()
        watch.last = self._look(watch, eventtime)
        watch.due = next_due(eventtime, watch.interval)
        self._watches[watch.conn] = watch
        if self._timer is None:
            self._timer = self.reactor.register_timer(self._tick)
        self.reactor.update_timer(self._timer, min(
            w.due for w in self._watches.values()))
        web_request.send({'eventtime': eventtime, 'status': watch.last})

    def _look(self, watch, eventtime):
        """The watched fields now: {object: {field: value}}, like Klipper
        (an unknown object is {}, an unknown field None)."""
        status = {}
        for name, fields in watch.objects.items():
            obj = self.printer.lookup_object(name, None)
            if obj is None or not hasattr(obj, 'get_status'):
                status[name] = {}
                continue
            values = obj.get_status(eventtime)
            if fields is None:
                status[name] = dict(values)
            else:
                status[name] = {f: values.get(f) for f in fields}
        return status

    def _tick(self, eventtime):
        for conn, watch in list(self._watches.items()):
            if conn.is_closed():
                del self._watches[conn]
            elif watch.due <= eventtime:
                self._look_again(watch, eventtime)
        if not self._watches:
            return self.reactor.NEVER
        return min(w.due for w in self._watches.values())

    def _look_again(self, watch, eventtime):
        start = self.reactor.monotonic()
        try:
            self._send_changes(watch, eventtime)
        except Exception:
            # A get_status that fails must not stop the printer
            logging.exception("router: watched objects %s",
                              sorted(watch.objects))
            del self._watches[watch.conn]
            return
        slow = self.reactor.monotonic() - start > SLOW_COST
        interval = watch.interval
        if interval < IDLE_INTERVAL and not self._busy(eventtime):
            interval = IDLE_INTERVAL
        watch.due = next_due(eventtime, max(interval,
                                            SLOW_INTERVAL if slow else 0.))

    def _send_changes(self, watch, eventtime):
        now = self._look(watch, eventtime)
        changes = {}
        for name, values in now.items():
            old = watch.last.get(name, {})
            diff = {f: v for f, v in values.items() if old.get(f) != v
                    or f not in old}
            if diff:
                changes[name] = diff
        if changes:
            watch.last = now
            msg = dict(watch.template)
            msg['params'] = {'eventtime': eventtime, 'status': changes}
            watch.conn.send(msg)
