# The ROUTER_EVENT_* G-code commands: mesh events
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
from ..mesh.sansio import events


class EventCommands:
    """Bad input is a gcmd.error only, as for every ROUTER_* command."""
    def __init__(self, eventbus, own_name):
        self.eventbus = eventbus
        self.own_name = own_name

    def commands(self):
        """(name, handler, help) of each command, for registering."""
        return (('ROUTER_EVENT_SUBSCRIBE', self.cmd_ROUTER_EVENT_SUBSCRIBE,
                 self.cmd_ROUTER_EVENT_SUBSCRIBE_help),
                ('ROUTER_EVENT_UNSUBSCRIBE', self.cmd_ROUTER_EVENT_UNSUBSCRIBE,
                 self.cmd_ROUTER_EVENT_UNSUBSCRIBE_help),
                ('ROUTER_EVENT_TRIGGER', self.cmd_ROUTER_EVENT_TRIGGER,
                 self.cmd_ROUTER_EVENT_TRIGGER_help))

    def _event(self, gcmd):
        text = gcmd.get('EVENT')
        event = events.check_event(text)
        if event is None:
            raise gcmd.error("EVENT '%s' is not a valid event name (letters,"
                             " digits and '_.:/-', at most 64)" % (text,))
        return event

    cmd_ROUTER_EVENT_SUBSCRIBE_help = (
        "Run G-code here whenever an event fires in the mesh: EVENT=<name>"
        " GCODE=<command>")
    def cmd_ROUTER_EVENT_SUBSCRIBE(self, gcmd):
        event = self._event(gcmd)
        gcode = gcmd.get('GCODE')
        try:
            added = self.eventbus.subscribe(event, gcode)
        except ValueError as e:
            raise gcmd.error("ROUTER_EVENT_SUBSCRIBE: %s" % (e,))
        gcmd.respond_info("Event '%s' runs %s%s" % (
            event, ' '.join(gcode.split()), "" if added else
            " (already subscribed)"), log=False)

    cmd_ROUTER_EVENT_UNSUBSCRIBE_help = (
        "Remove event handlers: EVENT=<name> [GCODE=<command>]")
    def cmd_ROUTER_EVENT_UNSUBSCRIBE(self, gcmd):
        event = self._event(gcmd)
        try:
            count = self.eventbus.unsubscribe(event,
                                                     gcmd.get('GCODE', None))
        except ValueError as e:
            raise gcmd.error("ROUTER_EVENT_UNSUBSCRIBE: %s" % (e,))
        gcmd.respond_info("Removed %d handler(s) of event '%s'"
                          % (count, event), log=False)

    cmd_ROUTER_EVENT_TRIGGER_help = (
        "Fire an event on every instance of the mesh: EVENT=<name>"
        " [KEY=VALUE ...] [CONTEXT=\"k=v,k=v\"]")
    def cmd_ROUTER_EVENT_TRIGGER(self, gcmd):
        event = self._event(gcmd)
        context = {}
        text = gcmd.get('CONTEXT', None)
        if text is not None:
            try:
                context.update(events.parse_context(text))
            except ValueError as e:
                raise gcmd.error("CONTEXT: %s" % (e,))
        for key, value in gcmd.get_command_parameters().items():
            if key in ('EVENT', 'CONTEXT'):
                continue
            if key in events.RESERVED or not events.KEY_RE.match(key):
                raise gcmd.error("ROUTER_EVENT_TRIGGER: '%s' cannot be a"
                                 " context key" % (key,))
            context[key] = value
        missed = self.eventbus.trigger(event, context,
                                              self.own_name)
        if missed:
            gcmd.respond_info("Event '%s' did not reach: %s" % (
                event, ', '.join('%s (%s)' % item
                                 for item in sorted(missed.items()))),
                log=False)
