# The mesh beyond the direct links, without I/O: which instances exist and
# whom each one has a link with (their cards: also which Klippers without
# the module each one is connected to and serves, for the list), and
# events relayed so that each instance runs them once.
#
# Every instance floods a small card when its links change. Edges count
# only when both ends list each other, so a dead instance's last card
# (which still lists its old neighbors) no longer connects it.
#
# An event is known by its origin, a random id and a digest of its body:
# another instance can neither guess the id of an event to come nor, by
# reusing an id it saw, hide an event with another body.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections, hashlib, json, random
from ...common import gcode_text

MAX_CARDS = 64          # instances one view keeps
MAX_LIST = 64           # names or sockets in one card
MAX_ID = 64             # a Klipper's id (lease.klipper_id)
MAX_SEEN = 4096         # events remembered for deduplication
ID_BYTES = 16           # random bytes of an event id
MAX_SKIP = 128


def _names(values, limit=MAX_LIST):
    if not isinstance(values, list) or len(values) > limit:
        raise ValueError("card list is not a short list")
    out = set()
    for v in values:
        name = gcode_text.check_name(v)
        if name is None:
            raise ValueError("card names %.40r" % (v,))
        out.add(name)
    return frozenset(out)


def _ids(values):
    if not isinstance(values, list) or len(values) > MAX_LIST or not all(
            isinstance(v, str) and 0 < len(v) <= MAX_ID for v in values):
        raise ValueError("card Klippers are not a short list of ids")
    return frozenset(values)


Card = collections.namedtuple('Card', 'name mesh boot seq neighbors plain'
                              ' serving')


def card_from_wire(data):
    """A Card from a peer's message. Raises ValueError."""
    if not isinstance(data, dict):
        raise ValueError("card is not an object")
    name = gcode_text.check_name(data.get('name'))
    mesh, boot, seq = data.get('mesh'), data.get('boot'), data.get('seq')
    if name is None or not isinstance(mesh, str) or len(mesh) > 64:
        raise ValueError("card without a valid name or mesh")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
               for v in (boot, seq)):
        raise ValueError("card without a numeric boot and seq")
    return Card(name, mesh, boot, seq, _names(data.get('neighbors')),
                _ids(data.get('plain')), _ids(data.get('serving')))


def card_to_wire(card):
    return {'name': card.name, 'mesh': card.mesh, 'boot': card.boot,
            'seq': card.seq, 'neighbors': sorted(card.neighbors),
            'plain': sorted(card.plain), 'serving': sorted(card.serving)}


class MeshView:
    """This instance's card and the cards it has heard of."""
    def __init__(self, name, mesh, boot):
        self.own = Card(name, mesh, boot, 0, frozenset(), frozenset(),
                        frozenset())
        self.cards = {}
        self._direct = set()      # names whose card came from themselves
        self._routes = None       # computed from the cards once per change

    def update_own(self, neighbors, plain, serving):
        """True when the card changed (it must then be sent around)."""
        neighbors, plain, serving = (frozenset(neighbors), frozenset(plain),
                                     frozenset(serving))
        own = self.own
        if (neighbors, plain, serving) == (own.neighbors, own.plain,
                                           own.serving):
            return False
        self.own = own._replace(seq=own.seq + 1, neighbors=neighbors,
                                plain=plain, serving=serving)
        self._routes = None
        return True

    def accept(self, card, direct=False, neighbors=()):
        """Keeps a card; True if it changed the view. A card an instance
        sends itself replaces the one held; one passed on by another must
        be newer, and counts only while the instance is not a neighbor
        (whose own cards come directly): a neighbor that forges another's
        card cannot hide that instance's real one."""
        if card.name == self.own.name:
            return False
        old = self.cards.get(card.name)
        if old is None and len(self.cards) >= MAX_CARDS:
            return False
        if direct:
            self._direct.add(card.name)
            if old == card:
                return False
        elif card.name in self._direct and card.name in neighbors:
            return False
        elif old is not None and (card.boot, card.seq) <= (old.boot,
                                                           old.seq):
            return False
        self.cards[card.name] = card
        self._routes = None
        return True

    def all_cards(self):
        return [self.own] + list(self.cards.values())

    def _edge(self, a, b):
        ca = self.own if a == self.own.name else self.cards.get(a)
        cb = self.own if b == self.own.name else self.cards.get(b)
        return (ca is not None and cb is not None and b in ca.neighbors
                and a in cb.neighbors)

    def routes(self):
        """{name: first hop} of every instance reachable from here over
        links both ends list (the first hop of a neighbor is itself).
        Shared until the view changes: not to be modified."""
        if self._routes is None:
            self._routes = self._find_routes(self.own.neighbors)
        return self._routes

    def routes_avoiding(self, first_hops):
        """routes() without those neighbors as first hops: where this
        instance reaches when they refuse what it sends them (they may
        still pass on what the others send them)."""
        return self._find_routes(self.own.neighbors - set(first_hops))

    def _find_routes(self, starts):
        routes = {}
        queue = collections.deque()
        for n in sorted(starts):
            routes[n] = n
            queue.append(n)
        while queue:
            here = queue.popleft()
            card = self.cards.get(here)
            for n in sorted(card.neighbors if card else ()):
                if n != self.own.name and n not in routes and (
                        self._edge(here, n)):
                    routes[n] = routes[here]
                    queue.append(n)
        return routes

    def known(self):
        return set(self.cards)


def new_event_id():
    """The id of a new event: random, so no one can take it before the
    event is sent."""
    return '%0*x' % (2 * ID_BYTES,
                     random.SystemRandom().getrandbits(8 * ID_BYTES))


def event_key(origin, ident, event, context, source):
    """What deduplicates an event: its origin, its id and a digest of its
    body (name, context, source), so the same event arriving by several
    ways is one, and an event that reuses its id with another body is
    another. Raises TypeError or ValueError for a body that is not JSON."""
    body = json.dumps([event, context, source], sort_keys=True,
                      separators=(',', ':'))
    digest = hashlib.blake2b(body.encode(), digest_size=16).digest()
    return (origin, ident, digest)


class SeenIds:
    """Event keys already run here; bounded, oldest forgotten first."""
    def __init__(self, size=MAX_SEEN):
        self.size = size
        self._ids = collections.OrderedDict()

    def first_time(self, key):
        if key in self._ids:
            return False
        self._ids[key] = True
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


def relay_plan(skip, neighbors, sender, own_name):
    """Where an event goes on from here, and the skip set it carries.
    skip holds instances some earlier hop sends it to: each hop adds its
    own neighbors, so in a full mesh nothing is relayed twice, and in a
    chain or ring it goes on to whoever has not been covered."""
    skip = set(skip) | {own_name}
    if sender is not None:
        skip.add(sender)
    targets = sorted(set(neighbors) - skip)
    new_skip = skip | set(neighbors)
    if len(new_skip) > MAX_SKIP:
        # Too large to carry: relaying to more than needed is harmless
        # (ids deduplicate), missing someone is not.
        new_skip = {own_name}
    return targets, sorted(new_skip)


def check_skip(values):
    """The skip list of a relayed event. Raises ValueError."""
    return _names(values, MAX_SKIP)
