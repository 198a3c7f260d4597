# Mesh events and cards on klippy's reactor: each event runs once on every
# instance it can reach, around a link that fails; cards keep the view of
# the mesh current. sansio/view.py holds the decisions, neighbors.py moves the
# messages.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging, time
from ..common import gcode_text
from ..link.sansio import framing
from .sansio import events, view as mesh_view
from .neighbors import BACKLOG
from ..common.timers import next_due
from ..common.timers import drop_timer

TICK = .5                # s between checks of inbound links and acks
MAX_HOPS = 16


class MeshRelay:
    def __init__(self, reactor, peers, mesh_name, callers, neighbors,
                 dispatch):
        self.reactor = reactor
        self.peers = peers
        self.callers = callers
        self.dispatch = dispatch     # runs an event's handlers here
        self.view = mesh_view.MeshView(peers.own_name, mesh_name, time.time())
        self.seen = mesh_view.SeenIds()
        self.retried = mesh_view.SeenIds()
        self.neighbors = neighbors
        neighbors.connect(self.receive, self._failed)
        self._neighbor_names = frozenset()
        self.election = None
        self._timer = None

    def connect(self, election):
        """The election's lease messages go through here, and it hears
        of every change of the view."""
        self.election = election

    def start(self):
        self._timer = self.reactor.register_timer(
            self._tick, next_due(self.reactor.monotonic(), TICK))

    def stop(self):
        self._timer = drop_timer(self.reactor, self._timer)
        self.neighbors.clear()

    def neighbor_names(self):
        return self.neighbors.names()

    def refresh(self):
        """Recomputes this instance's card; sends it around if changed,
        and every card held to a new neighbor."""
        neighbors = self.neighbor_names()
        plain = {p.kid for p in self.peers.values()
                 if p.wants_serve and p.kid is not None}
        serving = {p.kid for p in self.peers.values()
                   if p.kid is not None and not p.has_module
                   and self.election.is_serving(p)}
        changed = self.view.update_own(neighbors, plain, serving)
        new = neighbors - self._neighbor_names
        self._neighbor_names = neighbors
        if changed:
            self._flood_card(self.view.own, None)
        if new:
            cards = [mesh_view.card_to_wire(c) for c in self.view.all_cards()]
            msg = framing.Encoded({'kind': 'cards', 'cards': cards})
            for name in sorted(new):
                self._send(name, msg, True)
        if changed or new:
            self.election.changed()

    def _tick(self, eventtime):
        self.neighbors.check(eventtime)
        self.refresh()
        return next_due(eventtime, TICK)

    def _send(self, name, msg, own=False):
        # This instance's own events and cards queue like any request;
        # what it passes on for others is dropped past a backlog
        self.neighbors.send(name, msg, limit=None if own else BACKLOG)

    def _failed(self, name, msg, why):
        """A message did not reach a neighbor: an event goes round the
        failed link through the others (ids keep it to one run)."""
        if msg.get('kind') == 'lease':
            return    # asked again at the next renewal
        if msg.get('kind') != 'event' or msg.get('to') == name:
            logging.info("router: mesh message to '%s' lost: %s", name, why)
            return
        logging.info("router: event to '%s' goes round: %s", name, why)
        self._retry(dict(msg, to=name), exclude={name})

    def _retry(self, msg, exclude):
        key = _key(msg) + (msg['to'],)
        if not self.retried.first_time(key):
            return
        wire = framing.Encoded(msg)   # the same for each: encoded once
        for n in sorted(self.neighbor_names() - set(exclude)):
            self._send(n, wire)

    def _flood_card(self, card, sender):
        # The card's own instance sent it to its neighbors itself
        skip = {sender, card.name} | (card.neighbors if sender else set())
        msg = framing.Encoded({'kind': 'cards',
                               'cards': [mesh_view.card_to_wire(card)]})
        for n in sorted(self.neighbor_names() - skip):
            self._send(n, msg, own=sender is None)

    # Events
    def originate(self, event, context, source):
        """Sends a new event of this instance (for source: this one, or a
        Klipper without the module that it serves) to the mesh."""
        msg = {'kind': 'event', 'origin': self.peers.own_name,
               'source': source, 'id': mesh_view.new_event_id(),
               'event': event, 'context': context, 'hops': 0}
        self.seen.first_time(_key(msg))
        self._relay(msg, [], None, own=True)

    def _relay(self, msg, skip, sender, own=False):
        targets, new_skip = mesh_view.relay_plan(
            skip, self.neighbor_names(), sender, self.peers.own_name)
        out = dict(msg, skip=new_skip, hops=msg.get('hops', 0) + 1)
        out.pop('to', None)
        out = framing.Encoded(out)    # the same for each: encoded once
        for name in targets:
            self._send(name, out, own)

    def not_reached(self):
        """{name: why} of the instances known to the mesh that an event
        cannot reach now: peers that are not ready or refuse it, every
        instance reached only through a neighbor that refuses it, and
        those no link reaches."""
        routes = self.view.routes()
        own = self.peers.own_name
        missed = {}
        for peer in self.peers.values():
            if peer.name in routes:
                if peer.ready and not peer.permits('events'):
                    missed[peer.name] = ("it does not accept events from"
                                         " '%s'" % (own,))
            elif not peer.ready:
                missed[peer.name] = peer.why_not_ready()
            elif peer.has_module:
                missed[peer.name] = peer.refusal('events')
        refusing = {n for n in missed if routes.get(n) == n}
        around = self.view.routes_avoiding(refusing) if refusing else routes
        for name, hop in routes.items():
            if name not in around and name not in missed:
                missed[name] = ("reached only through '%s', which does not"
                                " accept events from '%s'" % (hop, own))
        for name in self.view.known() - set(routes) - set(missed):
            missed[name] = "not reachable in the mesh"
        return missed

    # Receiving
    def receive(self, sender, msg):
        """One message from a neighbor. Bad messages are logged, never
        raised: they come from another printer. Returns why an event is
        refused here (its allow:), or None."""
        try:
            kind = msg.get('kind')
            if kind == 'lease':
                self.election.receive(sender, msg)
            elif kind == 'cards':
                self._receive_cards(sender, msg.get('cards'))
            elif kind == 'event':
                return self._receive_event(sender, msg)
        except (ValueError, TypeError, KeyError) as e:
            logging.info("router: bad mesh message from '%s': %s", sender, e)
        except Exception:
            # Never out of a webhooks endpoint or the link's inbox: either
            # would shut this printer down for another's message
            logging.exception("router: mesh message from '%s'", sender)

    def _receive_cards(self, sender, cards):
        if not isinstance(cards, list) or len(cards) > mesh_view.MAX_CARDS + 1:
            raise ValueError("cards is not a short list")
        changed = False
        neighbors = self.neighbor_names()
        for data in cards:
            card = mesh_view.card_from_wire(data)
            # An instance's own card, from it, beats any passed on about it
            if self.view.accept(card, direct=card.name == sender,
                                neighbors=neighbors):
                changed = True
                self._flood_card(card, sender)
        if changed:
            self.election.changed()

    def _receive_event(self, sender, msg):
        refused = self.callers.refusal(sender, 'events')
        if refused is not None:
            logging.info("router: event from '%s' refused: %s", sender,
                         refused)
            return refused
        msg, skip = _checked_event(msg)
        origin, event, context, source, hops = (
            msg['origin'], msg['event'], msg['context'], msg['source'],
            msg['hops'])
        key = _key(msg)
        to = msg.get('to')
        if to is not None and to != self.peers.own_name:
            # Going round a failed link towards 'to'
            if hops < MAX_HOPS:
                msg['hops'] = hops + 1
                if to in self.neighbor_names():
                    if self.retried.first_time(key + (to,)):
                        self._send(to, dict(msg, to=None))
                else:
                    self._retry(msg, exclude={sender})
            return
        if not self.seen.first_time(key):
            return
        if source == self.peers.own_name:
            pass    # asked another instance to trigger it: ran here then
        elif self._accepts(origin):
            self.dispatch(event, context, source)
        else:
            logging.info("router: event '%s' from '%s' not run here (allow:)",
                         event, origin)
        if hops < MAX_HOPS:
            self._relay(msg, skip, sender)

    def _accepts(self, origin):
        """allow: of this instance applies to the event's origin."""
        return (origin != self.peers.own_name
                and 'events' in self.callers.allow_of(origin))

    # The view, for printer.router and the list (klipper/status.py)
    def routes(self):
        """{name: first hop} of every instance reachable now."""
        return self.view.routes()

    def known_names(self):
        """Every instance this one has a card of."""
        return self.view.known()


def _checked_event(msg):
    """(the event as checked, its skip list). Raises ValueError. Passed
    on as checked: the key of the same event is the same here and
    wherever it goes (_key)."""
    origin = gcode_text.check_name(msg.get('origin'))
    event = events.check_event(msg.get('event'))
    ident = msg.get('id')
    hops = msg.get('hops')
    if (origin is None or event is None or not isinstance(ident, str)
            or len(ident) > 64 or not isinstance(hops, int)):
        raise ValueError("event without origin, name, id or hops")
    skip = mesh_view.check_skip(msg.get('skip', []))
    context = events.check_context(msg.get('context', {}))
    source = gcode_text.check_name(msg.get('source', origin))
    if source is None:
        raise ValueError("event with an invalid source")
    return dict(msg, origin=origin, event=event, context=context,
                source=source), skip


def _key(msg):
    """The deduplication key of a checked event message."""
    return mesh_view.event_key(msg['origin'], msg['id'], msg['event'],
                          msg['context'], msg['source'])
