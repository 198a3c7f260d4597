# Who is calling: the instance a connection's router named in router/info,
# and the two endpoints through which peers' routers talk to this one
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import weakref
from ..common import endpoints, gcode_text
from .output import ScriptOutput, pusher
from .sansio import trust
from .sansio.session import CLIENT_VERSION


class Callers:
    def __init__(self, printer, peers, mesh, allow_unlisted, run_now):
        self.peers = peers
        self.mesh = mesh
        self.allow_unlisted = allow_unlisted
        # run_now(func) -> error text or None: G-code of a job, never a
        # failed command of this instance (klipper/runner.py)
        self.scripts = ScriptOutput(printer.lookup_object('gcode'), run_now)
        # An instance this one does not know named itself (discovery looks)
        self.on_stranger = None
        # API connection -> the instance name its router gave in router/info
        self._names = weakref.WeakKeyDictionary()
        endpoints.register(printer, 'router/info', self._handle_info)
        endpoints.register(printer, 'router/gcode', self._handle_gcode)

    def caller_of(self, web_request):
        """The trust.Caller behind an API request: the instance its router
        named in router/info on that connection, or this instance."""
        return self.caller_named(
            self._names.get(web_request.get_client_connection()))

    def caller_named(self, name):
        """The trust.Caller of an instance name (None: this instance)."""
        here = self.peers.own_name
        if name is None or name == here:
            return trust.Caller.local(here)
        peer = self.peers.get(name)
        if peer is None and not self.allow_unlisted:
            return trust.Caller.unknown(name, here)
        where = ("[router] allow_unlisted:" if peer is None else
                 "[router] allow:" if peer.known_by == 'discovered' else None)
        return trust.Caller.instance(name, self.allow_of(name), here,
                                     where)

    def calling(self):
        """The names that instances' routers gave in router/info on the
        API connections open now."""
        return set(name for conn, name in list(self._names.items())
                   if not conn.is_closed())

    def unlisted(self):
        """Instances linked here now that this config does not list (and
        allow_unlisted: does not admit): each is refused everything."""
        if self.allow_unlisted:
            return []
        return sorted(self.calling() - set(self.peers)
                      - {self.peers.own_name})

    def refusal(self, name, action):
        """Why the instance may not do that here, or None."""
        try:
            self.caller_named(name).require(action)
        except trust.Refused as e:
            return str(e)
        return None

    def allow_of(self, name):
        """What an instance may do here: its section's allow:, or
        allow_unlisted: for an instance this config does not list."""
        peer = self.peers.get(name)
        return peer.allow if peer is not None else self.allow_unlisted

    def check(self, web_request, action):
        """Raises an API error if the caller may not do this here."""
        # What caller_of(...).require(action) decides, without building a
        # Caller when it allows: this runs on every call from a peer
        name = self._names.get(web_request.get_client_connection())
        if name is None or name == self.peers.own_name:
            return
        peer = self.peers.get(name)
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
            if (caller not in self.peers and caller != self.peers.own_name
                    and self.on_stranger is not None):
                # An instance this one has not found yet dialed in
                self.on_stranger()
            elif caller in self.peers:
                # It dialed in, so it may list this instance now: a link
                # to it that found it did not is asked again at once
                self.peers[caller].relearn_soon()
        who = self.caller_of(web_request)
        web_request.send({'name': self.peers.own_name,
                          'mesh': self.mesh,
                          'version': CLIENT_VERSION,
                          'peers': sorted(self.peers),
                          'known': who.kind != trust.Caller.UNKNOWN,
                          'allow': sorted(who.allow),
                          'where': who.where})

    def _handle_gcode(self, web_request):
        # G-code from a peer's router: gcode/script, with its permission;
        # what it prints is pushed back while it runs if the caller gives
        # a call number (output); its failure, or an unknown command, is
        # the peer's answer
        self.check(web_request, 'gcode')
        script = web_request.get_str('script')
        call = web_request.get('output', None)
        if call is not None and (not isinstance(call, int)
                                 or isinstance(call, bool)):
            raise web_request.error("router/gcode: output must be an"
                                    " integer")
        send = (None if call is None else
                pusher(web_request.get_client_connection(), call))
        error = self.scripts.run(script, send)
        if error is not None:
            raise web_request.error(error)
