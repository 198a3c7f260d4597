# Mesh events on klippy: running handlers here, fanning a trigger out to
# the peers, and the endpoint through which peers deliver theirs.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging
from ..common import endpoints, gcode_text
from .sansio import events

DELIVER = 'router/event/deliver'


class EventBus:
    def __init__(self, printer, peers, runner, callers):
        self.peers = peers
        self.runner = runner
        self.callers = callers
        self.relay = None      # connect(): the mesh's relay
        self.table = events.EventTable()
        endpoints.register(printer, DELIVER, self._handle_deliver)

    def connect(self, relay):
        """The relay that sends this instance's events to the mesh (and
        hands it those of others, through dispatch)."""
        self.relay = relay

    # Handlers
    def add_config_handlers(self, config, event):
        for line in config.get('gcode').split('\n'):
            if not line.strip():
                continue
            try:
                handler = events.Handler(event, line)
                handler.from_config = True
                self.table.add(handler)
            except ValueError as e:
                raise config.error("Option 'gcode' in section '%s': %s"
                                   % (config.get_name(), e))

    def subscribe(self, event, gcode, target=None, kind='gcode'):
        """Raises ValueError; returns False when it was there already."""
        return self.table.add(events.Handler(event, gcode, target, kind))

    def unsubscribe(self, event, gcode=None, target=None):
        keep = [h for h in self.table.handlers(event)
                if getattr(h, 'from_config', False)]
        return self.table.remove(event, gcode, target, keep)

    # Triggering
    def trigger(self, event, context, source):
        """Runs the handlers here and sends the event to the mesh, where
        each instance runs it once. Returns {instance: reason} of those
        known that it cannot reach now."""
        self.dispatch(event, context, source)
        self.relay.originate(event, context, source)
        return self.relay.not_reached()

    def dispatch(self, event, context, source):
        """Runs this instance's handlers (and those it keeps for peers
        without the module); returns how many."""
        handlers = self.table.handlers(event)
        for handler in handlers:
            try:
                self._run(handler, context, event, source)
            except Exception:
                logging.exception("router: event handler %s", handler.gcode)
        return len(handlers)

    def _run(self, handler, context, event, source):
        what = "handler '%s' of event '%s'" % (handler.gcode, event)
        if handler.kind == 'webhook':
            self._run_webhook(handler, context, what)
            return
        try:
            params = handler.build_params(context, event, source)
        except KeyError as e:
            self.runner.report("%s failed: the event has no value for {%s}"
                               % (what, e.args[0]))
            return
        if handler.target is not None:
            peer = self.peers.get(handler.target)
            if peer is None or not peer.ready:
                logging.info("router: %s skipped: '%s' not ready", what,
                             handler.target)
                return
            line = gcode_text.command_line(handler.command, params)
            peer.request('gcode/script', {'script': line},
                         self.runner.reporter("%s on '%s'" % (
                             what, peer.name), peer.name))
        elif self.runner.find_macro(handler.command) is not None:
            self.runner.call_macro(handler.command, params, what)
        else:
            # A native command gets its own parameters only: unknown extra
            # ones would be errors for many commands.
            own = {k: params[k] for k, v in handler.params}
            self.runner.run_script(
                gcode_text.command_line(handler.command, own), what)

    def _run_webhook(self, handler, context, what):
        target = handler.target
        peer = self.peers.get(target) if target else None
        if peer is None or not peer.ready:
            logging.info("router: %s skipped: no ready target", what)
            return
        peer.request(handler.command, dict(context), self.runner.reporter(
            "%s on '%s'" % (what, peer.name), peer.name))

    # Delivery from a peer
    def _handle_deliver(self, web_request):
        self.callers.check(web_request, 'events')
        event = events.check_event(web_request.get_str('event'))
        source = gcode_text.check_name(web_request.get_str('source'))
        if event is None or source is None:
            raise web_request.error("invalid event or source name")
        try:
            context = events.check_context(web_request.get_dict('context',
                                                                {}))
        except ValueError as e:
            raise web_request.error(str(e))
        web_request.send({'handlers': self.dispatch(event, context, source)})
