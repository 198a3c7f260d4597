# The ROUTER_OBJECTS_* G-code commands: another instance's objects
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import json
from ..link.sansio import rpc
from ..common import gcode_text
from ..peer.sansio import subscriptions
from .commands import CommandBase


class ObjectCommands(CommandBase):
    """List, query and follow another instance's objects."""
    def commands(self):
        """(name, handler, help) of each command, for registering."""
        return (('ROUTER_OBJECTS_LIST', self.cmd_ROUTER_OBJECTS_LIST,
                 self.cmd_ROUTER_OBJECTS_LIST_help),
                ('ROUTER_OBJECTS_QUERY', self.cmd_ROUTER_OBJECTS_QUERY,
                 self.cmd_ROUTER_OBJECTS_QUERY_help),
                ('ROUTER_OBJECTS_SUBSCRIBE', self.cmd_ROUTER_OBJECTS_SUBSCRIBE,
                 self.cmd_ROUTER_OBJECTS_SUBSCRIBE_help),
                ('ROUTER_OBJECTS_UNSUBSCRIBE',
                 self.cmd_ROUTER_OBJECTS_UNSUBSCRIBE,
                 self.cmd_ROUTER_OBJECTS_UNSUBSCRIBE_help))

    def _query(self, gcmd, peer, method, params, what, action='query'):
        if not peer.session.session_up:
            raise gcmd.error("%s: peer '%s' is %s" % (what, peer.name,
                                                      peer.describe()))
        if not peer.permits(action):
            raise gcmd.error("%s: %s" % (what, peer.refusal(action)))
        timeout = self._timeout(gcmd, peer.request_timeout)
        def send(callback):
            try:
                peer.request(method, params, callback, timeout, inline=True)
            except rpc.NotSent as e:
                raise gcmd.error("%s: cannot send to '%s': %s"
                                 % (what, peer.name, e))
        result = self._wait(gcmd, peer, send, timeout, what)
        if not isinstance(result, dict):
            raise gcmd.error("%s: '%s' sent an invalid reply"
                             % (what, peer.name))
        return result

    def _objects(self, gcmd):
        text = gcmd.get('OBJECTS')
        try:
            return subscriptions.parse_objects(text)
        except ValueError as e:
            raise gcmd.error("OBJECTS: %s (expected e.g. OBJECTS=\"print_stats"
                             ":state,heater_generic chamber:temperature|"
                             "target\")" % (e,))

    def _peer_target(self, gcmd):
        if gcode_text.check_name(gcmd.get('TARGET')) == self.peers.own_name:
            raise gcmd.error("TARGET '%s' is this instance; read its objects"
                             " with printer.<object>" % (self.peers.own_name,))
        return self._target(gcmd)

    cmd_ROUTER_OBJECTS_LIST_help = "List another instance's printer objects"
    def cmd_ROUTER_OBJECTS_LIST(self, gcmd):
        peer = self._peer_target(gcmd)
        result = self._query(gcmd, peer, 'objects/list', {},
                             'ROUTER_OBJECTS_LIST')
        names = result.get('objects')
        if not isinstance(names, list):
            raise gcmd.error("ROUTER_OBJECTS_LIST: '%s' sent an invalid"
                             " reply" % (peer.name,))
        names = sorted(gcode_text.clean_text(n) for n in names)
        gcmd.respond_info("Objects of '%s' (%d):\n%s" % (
            peer.name, len(names), '\n'.join(names)), log=False)

    cmd_ROUTER_OBJECTS_QUERY_help = (
        "Print another instance's object values: TARGET=<peer>"
        " OBJECTS=<object[:field|field],...>")
    def cmd_ROUTER_OBJECTS_QUERY(self, gcmd):
        peer, objects = self._peer_target(gcmd), self._objects(gcmd)
        result = self._query(gcmd, peer, 'objects/query',
                             {'objects': objects}, 'ROUTER_OBJECTS_QUERY')
        status = result.get('status')
        if not isinstance(status, dict):
            raise gcmd.error("ROUTER_OBJECTS_QUERY: '%s' sent an invalid"
                             " reply" % (peer.name,))
        lines = []
        for name in sorted(objects):
            values = status.get(name)
            if not values:
                lines.append("%s: (no such object or field)" % (name,))
            else:
                lines.append("%s: %s" % (name, json.dumps(
                    values, sort_keys=True, default=str)))
        gcmd.respond_info("\n".join(lines), log=False)

    cmd_ROUTER_OBJECTS_SUBSCRIBE_help = (
        "Follow another instance's objects: TARGET=<peer> OBJECTS=<list>"
        " [CALLBACK=<macro>]")
    def cmd_ROUTER_OBJECTS_SUBSCRIBE(self, gcmd):
        peer, objects = self._peer_target(gcmd), self._objects(gcmd)
        try:
            subscriptions.check_followable(objects)
        except ValueError as e:
            raise gcmd.error("OBJECTS: %s" % (e,))
        callback = self._callback(gcmd, must_exist=True)
        if not peer.permits('subscribe'):
            raise gcmd.error("ROUTER_OBJECTS_SUBSCRIBE: %s"
                             % (peer.refusal('subscribe'),))
        if peer.ready:
            self._check_present(gcmd, peer, objects)
        try:
            peer.subscribe(subscriptions.Subscription(callback, objects))
        except ValueError as e:
            raise gcmd.error("ROUTER_OBJECTS_SUBSCRIBE to '%s': %s"
                             " (subscribe/on_update of [router %s])"
                             % (peer.name, e, peer.name))
        when = "" if peer.ready else (
            " (from when '%s' is ready; what it lacks is reported then)"
            % (peer.name,))
        gcmd.respond_info("Following %s on '%s'%s%s" % (
            subscriptions.format_objects(objects), peer.name,
            " with %s" % (callback,) if callback else "", when), log=False)

    def _check_present(self, gcmd, peer, objects):
        """Refuses what the peer does not have: Klipper would follow it
        silently ({} for an object, None for a field). Klipper's own
        objects/list and objects/query: what subscribe: also shows."""
        what = 'ROUTER_OBJECTS_SUBSCRIBE'
        names = self._query(gcmd, peer, 'objects/list', {}, what,
                            'subscribe').get('objects')
        if not isinstance(names, list):
            raise gcmd.error("%s: '%s' sent an invalid reply"
                             % (what, peer.name))
        listed = frozenset(n for n in names if isinstance(n, str))
        ask = {n: None for n, fields in objects.items()
               if fields is not None and n in listed}
        full = self._query(gcmd, peer, 'objects/query', {'objects': ask},
                           what, 'subscribe').get('status') if ask else {}
        missing = subscriptions.find_missing(objects, listed, full if (
            isinstance(full, dict)) else {})
        if missing:
            raise gcmd.error("%s: '%s' has no %s: nothing subscribed" % (
                what, peer.name, subscriptions.format_missing(missing)))

    cmd_ROUTER_OBJECTS_UNSUBSCRIBE_help = (
        "Stop following another instance: TARGET=<peer> [CALLBACK=<macro>]")
    def cmd_ROUTER_OBJECTS_UNSUBSCRIBE(self, gcmd):
        peer = self._peer_target(gcmd)
        if gcmd.get('CALLBACK', None) is None:
            keys = [k for k, sub in peer.subs.subs.items()
                    if not sub.from_config and not sub.runs_on]
        else:
            callback = self._callback(gcmd, must_exist=False)
            key = ('', callback)
            sub = peer.subs.subs.get(key)
            if sub is None:
                raise gcmd.error("No subscription to '%s' with CALLBACK=%s"
                                 % (peer.name, callback))
            if sub.from_config:
                raise gcmd.error("The subscription of %s to '%s' is set in"
                                 " the config" % (callback, peer.name))
            keys = [key]
        for key in keys:
            peer.unsubscribe(key)
        gcmd.respond_info("Removed %d subscription(s) to '%s'"
                          % (len(keys), peer.name), log=False)

