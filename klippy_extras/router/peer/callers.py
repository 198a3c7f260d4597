# Who is calling: the instance a connection's router named in router/info,
# and the two endpoints through which peers' routers talk to this one
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import weakref
from ..common import gcode_text
from .sansio import trust
from .sansio.session import CLIENT_VERSION


class Callers:
    def __init__(self, router):
        self.router = router
        # API connection -> the instance name its router gave in router/info
        self._names = weakref.WeakKeyDictionary()
        webhooks = router.printer.lookup_object('webhooks')
        webhooks.register_endpoint('router/info', self._handle_info)
        webhooks.register_endpoint('router/gcode', self._handle_gcode)

    def caller_of(self, web_request):
        """The trust.Caller behind an API request: the instance its router
        named in router/info on that connection, or this instance."""
        router = self.router
        name = self._names.get(web_request.get_client_connection())
        if name is None or name == router.name:
            return trust.Caller.local(router.name)
        peer = router.peers.get(name)
        if peer is None and not router.allow_unlisted:
            return trust.Caller.unknown(name, router.name)
        where = ("[router] allow_unlisted:" if peer is None else
                 "[router] allow:" if peer.known_by == 'discovered' else None)
        return trust.Caller.instance(name, self.allow_of(name), router.name,
                                     where)

    def allow_of(self, name):
        """What an instance may do here: its section's allow:, or
        allow_unlisted: for an instance this config does not list."""
        peer = self.router.peers.get(name)
        return peer.allow if peer is not None else self.router.allow_unlisted

    def check(self, web_request, action):
        """Raises an API error if the caller may not do this here."""
        # What caller_of(...).require(action) decides, without building a
        # Caller when it allows: this runs on every call from a peer
        name = self._names.get(web_request.get_client_connection())
        if name is None or name == self.router.name:
            return
        peer = self.router.peers.get(name)
        if peer is not None and action in peer.allow:
            return
        try:
            self.caller_of(web_request).require(action)
        except trust.Refused as e:
            raise web_request.error(str(e))

    def _handle_info(self, web_request):
        name = web_request.get('name', None)
        caller = gcode_text.check_name(name)
        if name is not None and caller is None:
            raise web_request.error("router/info: %.40r is not an instance"
                                    " name" % (name,))
        if caller is not None:
            self._names[web_request.get_client_connection()] = caller
            if (caller not in self.router.peers and caller != self.router.name
                    and self.router.discovery is not None):
                # An instance this one has not found yet dialed in
                self.router.discovery.scan_soon()
        who = self.caller_of(web_request)
        web_request.send({'name': self.router.name,
                          'mesh': self.router.mesh,
                          'version': CLIENT_VERSION,
                          'peers': sorted(self.router.peers),
                          'known': who.kind != trust.Caller.UNKNOWN,
                          'allow': sorted(who.allow)})

    def _handle_gcode(self, web_request):
        # G-code from a peer's router: gcode/script, with its permission
        self.check(web_request, 'gcode')
        self.router.gcode.run_script(web_request.get_str('script'))
