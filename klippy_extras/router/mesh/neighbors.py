# The instances with the module that this one has a link with, in either
# direction, and sending one mesh message to one of them.
#
# A neighbor is one this instance dials (requests to its router/mesh
# endpoint, answered), or one that dials this instance and registered the
# remote method router/link/<its name> here (pushes, which it acknowledges
# with router/mesh/ack). Either direction carries everything.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging
from ..common import endpoints
from ..link.sansio import framing, rpc
from ..peer.sansio import trust

ENDPOINT = 'router/mesh'
LINK_ENDPOINT = 'router/mesh/link'
ACK_ENDPOINT = 'router/mesh/ack'
HOP_TIMEOUT = 5.         # s for a neighbor to take a message
MAX_PENDING = 10000      # pushes waiting for their acknowledgement
# A neighbor that leaves this many mesh messages unanswered does not keep
# up: more that this instance passes on for others are dropped (not sent
# round either, which would spread the load), so a flood through this
# instance costs it a bounded amount.
BACKLOG = 100


def link_method(name):
    return 'router/link/' + name


def _is_neighbor(peer):
    """A peer this instance dials that is a neighbor: ready, with the
    module, and knowing this instance."""
    return peer.ready and peer.has_module and peer.session.remote_known


class Neighbors:
    def __init__(self, printer, peers, callers, on_changed):
        self.printer = printer
        self.reactor = printer.get_reactor()
        self.peers = peers
        self.callers = callers
        self.on_changed = on_changed    # () a neighbor linked here
        self.on_message = self.on_failed = None   # set by connect()
        self._inbound = {}        # name -> API connection that linked here
        self._pending = {}        # ack number -> (deadline, name, msg)
        self._ack_seq = 0
        self._unanswered = {}     # name -> requests sent, not answered
        self.dropped = 0
        self.webhooks = printer.lookup_object('webhooks')
        for path, handler in ((ENDPOINT, self._handle_message),
                              (LINK_ENDPOINT, self._handle_link),
                              (ACK_ENDPOINT, self._handle_ack)):
            endpoints.register(printer, path, handler)

    def connect(self, on_message, on_failed):
        """on_message(sender name, msg) takes each message received and
        returns why it is refused (the endpoint answers that), or None;
        on_failed(name, msg, why) is told of each one not delivered."""
        self.on_message = on_message
        self.on_failed = on_failed

    def clear(self):
        self._inbound.clear()
        self._pending.clear()
        self._unanswered.clear()

    def _dialed(self, name):
        peer = self.peers.get(name)
        return peer if peer is not None and _is_neighbor(peer) else None

    def _inbound_open(self, name):
        conn = self._inbound.get(name)
        return conn is not None and not conn.is_closed()

    def names(self):
        names = {p.name for p in self.peers.values() if _is_neighbor(p)}
        names.update(n for n in self._inbound if self._inbound_open(n))
        return frozenset(names)

    def offer_way_back(self, peer):
        """A dialed module peer got ready: let it push to this one."""
        if not peer.session.remote_known:
            return
        def on_reply(result, error):
            if error is not None:
                logging.info("router: no way back from '%s': %s",
                             peer.name, error)
        try:
            peer.request('register_remote_method', {
                'remote_method': link_method(self.peers.own_name),
                'response_template': {'router': 'mesh'}}, on_reply)
            peer.request(LINK_ENDPOINT, {}, on_reply)
        except rpc.NotSent as e:
            logging.info("router: no way back from '%s': %s", peer.name, e)

    def check(self, now):
        """Forgets closed inbound links; pushes unacknowledged in time
        have failed."""
        for n in [n for n in self._inbound if not self._inbound_open(n)]:
            del self._inbound[n]
        late = [k for k, (deadline, _, _) in self._pending.items()
                if deadline <= now]
        for key in late:
            deadline, name, msg = self._pending.pop(key)
            self._unanswered[name] -= 1
            self.on_failed(name, msg, "no acknowledgement")

    def _behind(self, name, limit):
        if limit is None or self._unanswered.get(name, 0) < limit:
            return False
        self.dropped += 1
        if self.dropped in (1, 10, 100) or not self.dropped % 1000:
            logging.info("router: '%s' does not keep up: %d mesh message(s)"
                         " dropped so far", name, self.dropped)
        return True

    def send(self, name, msg, limit=None):
        """Sends msg to a neighbor; on_failed(name, msg, why) if the link
        lost it (a refusal by the neighbor is logged only; a neighbor that
        does not keep up misses what is over limit). msg may be a
        framing.Encoded message: one sent to several is encoded once."""
        params = msg
        if isinstance(msg, framing.Encoded):
            msg = msg.value
        if self._behind(name, limit):
            return
        peer = self._dialed(name)
        if peer is not None:
            def on_reply(result, error):
                self._unanswered[name] -= 1
                if error is not None and error.kind in (rpc.LOST,
                                                        rpc.TIMEOUT):
                    self.on_failed(name, msg, error)
                elif error is not None:
                    logging.info("router: '%s' did not take a mesh message:"
                                 " %s", name, error)
            try:
                # A reply (a result or the neighbor's error) only counts and
                # logs, so the link may take it in its fd callback (see
                # Link.take_now); a lost or late one never comes that way.
                peer.request(ENDPOINT, params, on_reply, HOP_TIMEOUT,
                             inline=True)
                self._unanswered[name] = self._unanswered.get(name, 0) + 1
            except rpc.NotSent as e:
                logging.info("router: mesh message to '%s' not sent: %s",
                             name, e)
            return
        if self._inbound_open(name) and len(self._pending) < MAX_PENDING:
            self._push(name, msg)
            return
        self.on_failed(name, msg, "no link")

    def _push(self, name, msg):
        """To a neighbor that dialed this instance: a remote-method call,
        acknowledged with router/mesh/ack."""
        self._ack_seq += 1
        self._pending[self._ack_seq] = (
            self.reactor.monotonic() + HOP_TIMEOUT, name, msg)
        self._unanswered[name] = self._unanswered.get(name, 0) + 1
        try:
            self.webhooks.call_remote_method(link_method(name), msg=msg,
                                             ack=self._ack_seq)
        except self.printer.command_error as e:
            self._pending.pop(self._ack_seq, None)
            self._unanswered[name] -= 1
            self.on_failed(name, msg, e)

    # Receiving
    def _caller(self, web_request):
        """Only a known instance takes part in the mesh here."""
        who = self.callers.caller_of(web_request)
        if who.kind == trust.Caller.UNKNOWN:
            raise web_request.error(trust.unknown_text(who.here, who.name))
        if who.kind != trust.Caller.INSTANCE:
            raise web_request.error("%s: for instances with the module"
                                    % (web_request.get_method(),))
        return who

    def _handle_message(self, web_request):
        who = self._caller(web_request)
        params = web_request.params
        if not isinstance(params, dict):
            params = {}
        refused = self.on_message(who.name, params)
        if refused is not None:
            raise web_request.error(refused)
        web_request.send({})

    def _handle_link(self, web_request):
        who = self._caller(web_request)
        self._inbound[who.name] = web_request.get_client_connection()
        web_request.send({})
        self.on_changed()

    def _handle_ack(self, web_request):
        self._caller(web_request)
        entry = self._pending.pop(web_request.get_int('ack', 0), None)
        if entry is not None:
            self._unanswered[entry[1]] -= 1
        web_request.send({})

    def handle_push(self, peer, pushed):
        """A message pushed by a neighbor this instance dials: Klipper's
        remote-method call of router/link/<name>, its kwargs in params."""
        params = pushed.get('params')
        if not isinstance(params, dict):
            return
        ack = params.get('ack')
        msg = params.get('msg')
        if isinstance(ack, int):
            try:
                peer.request(ACK_ENDPOINT, {'ack': ack},
                             lambda result, error: None)
            except rpc.NotSent:
                pass
        self.on_message(peer.name, msg if isinstance(msg, dict) else {})
