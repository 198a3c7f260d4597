# Who serves a Klipper without the module: promises between the instances
# connected to it (its candidates), without I/O.
#
# A candidate asks every neighbor, every RENEW, to promise not to serve
# that Klipper for LEASE from the moment it asked. It serves while it holds
# a promise from every other candidate, and checks that at each call: a
# server that stalls, or cannot reach a candidate, finds its promises run
# out and stops (so calls that queued while it stalled are dropped). A
# promiser counts its promise from when the ask arrived, plus MARGIN, so it
# always ends after the asker's.
#
# Takeover: a candidate whose promise to the server ran out, and that has
# heard nothing from it since, fences it: it no longer needs the server's
# promise, because the server cannot serve again without a new promise
# from it. Only a server that said it served on one's promise can be
# fenced (it says so only once it received that promise), and a promise
# received clears the right to fence its giver, so two candidates never
# both hold the right to fence the other.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections

LEASE = 2.          # s a promise lasts, from the moment it was asked for
MARGIN = .25        # s a promiser adds: clocks of two hosts drift
RENEW = .5          # s between asks
START = LEASE + MARGIN   # a new instance waits out its predecessor's promises
NEW_GRACE = 2 * RENEW    # s to get the promise of one first heard of
MAX_ASKS = 64       # asks remembered (older ones have run out anyway)
MAX_KLIPPERS = 64   # Klippers one instance tracks promises for
MAX_OTHERS = 64     # instances one claim remembers


Other = collections.namedtuple('Other', 'inc want serving heard proc since')


class Claim:
    """One instance's part in choosing the server of one Klipper.
    Times are this instance's monotonic clock."""
    def __init__(self, own, started):
        self.own = own
        self.started = started   # when this instance's router started
        self.want = False        # connected to that Klipper, may serve it
        self.serving = False     # decided to serve (held() says if it may)
        self.others = {}         # name -> Other: what it last said
        self.held = {}           # name -> when its promise to me ends
        self.promise = None      # (name, end): who I promised not to serve
        self.promised = {}       # name -> end of my last promise to it
        self.served_on = set()   # said it served while my promise lasted
        self.fenced = set()      # servers I took over from
        self.used = set()        # I served on its promise: it may fence me
        self.present = None      # names that count now (None: every one)
        self._asks = collections.OrderedDict()   # n -> time asked
        self._n = 0

    # What this instance asks and answers
    def ask(self, now):
        """The next ask: (n, serving) to send to every neighbor."""
        self._n += 1
        self._asks[self._n] = now
        while len(self._asks) > MAX_ASKS:
            self._asks.popitem(last=False)
        return self._n, self.holds(now)

    def on_yours(self, name, now):
        """Said in each ask to name: do I hold its promise now? (Only a
        server that got my promise, and so gave up any right to fence me,
        can say so.) Once said while serving, that one may fence me: it
        counts for me until it says the same of mine."""
        mine = self.held.get(name, 0.) > now
        if mine and self.serving:
            self.used.add(name)
        return mine

    def answer(self, name, inc, want, serving, on_yours, proc, now):
        """An ask from a neighbor: True to promise, False to refuse."""
        self._heard(name, inc, want, serving, proc, now)
        if not want:
            return True
        if on_yours:
            self.used.discard(name)     # it got my promise: no fencing me
            if serving and name in self.promised:
                self.served_on.add(name)
        if self.holds(now) or self._promised_other(name, now):
            return False
        if not serving and self._first_wanting(now) < name:
            return False     # several try: the first name goes first
        end = now + LEASE + MARGIN
        self.promise = (name, end)
        self.promised[name] = end
        self.fenced.discard(name)
        return True

    def reply(self, name, n, inc, granted, want, serving, proc, now):
        """The answer to my ask number n."""
        self._heard(name, inc, want, serving, proc, now)
        asked = self._asks.get(n)
        if granted and asked is not None and asked + LEASE > now:
            self.held[name] = max(self.held.get(name, 0.), asked + LEASE)
            # It promised me after whatever I promised it: that is over.
            # (An answer to an ask older than a lease, from one that
            # stalled, proves nothing of now.)
            self.promised.pop(name, None)
            self.served_on.discard(name)
            self.fenced.discard(name)

    def _heard(self, name, inc, want, serving, proc, now):
        old = self.others.get(name)
        if old is None and len(self.others) >= MAX_OTHERS:
            return
        since = now if old is None else old.since
        if old is not None and old.inc != inc:
            # Another run of that instance: the old one serves no more,
            # and what passed between us (promises, rights to fence) is
            # void; a promise I gave still holds me to it
            self.held.pop(name, None)
            self.promised.pop(name, None)
            self.served_on.discard(name)
            self.fenced.discard(name)
            self.used.discard(name)
            since = now
        self.others[name] = Other(inc, want, serving, now, proc, since)

    def forget(self, name):
        """The instance is gone (its process ended)."""
        self.others.pop(name, None)
        self.held.pop(name, None)
        self.promised.pop(name, None)
        self.served_on.discard(name)
        self.fenced.discard(name)
        self.used.discard(name)
        if self.promise is not None and self.promise[0] == name:
            self.promise = None

    def _first_wanting(self, now):
        """The first name among those that try to serve now (this one
        included): a promise goes to it, so promises never go round in a
        circle. One not heard of for a lease does not count."""
        names = [n for n, o in self.others.items() if o.want
                 and now - o.heard <= LEASE + MARGIN]
        if self.want:
            names.append(self.own)
        return min(names)

    def _promised_other(self, name, now):
        return (self.promise is not None and self.promise[0] != name
                and self.promise[1] > now)

    # Deciding
    def _counts(self, name):
        """Does that instance's promise count now? It does while it is
        present (linked, or possibly running where this one dials it) and
        while it may fence this one; one that linked here and went away
        for good (a client that named itself, say) does not."""
        return (self.present is None or name in self.present
                or name in self.used)

    def needed(self, now):
        """The instances whose promise this instance needs to serve: every
        one it has heard of that counts (one not connected to that Klipper
        promises freely), but those it took over from."""
        self._fence(now)
        return sorted(n for n in self.others
                      if n not in self.fenced and self._counts(n))

    def _fence(self, now):
        for name in list(self.served_on):
            end = self.promised.get(name)
            other = self.others.get(name)
            if end is not None and end <= now and (
                    other is None or other.heard < end):
                self.fenced.add(name)
                self.served_on.discard(name)

    def holds(self, now):
        """May this instance run a call for that Klipper now? An instance
        first heard of while serving has asked this one, so it cannot
        serve without this one's promise: its own is asked for, and needed
        after NEW_GRACE."""
        if not (self.serving and self.want):
            return False
        for name, other in self.others.items():
            if name not in self.fenced and self.held.get(name, 0.) <= now \
                    and other.since + NEW_GRACE <= now and self._counts(name):
                return False
        return True

    def can_start(self, now, potential):
        """True when this instance may start serving: it has heard from
        every instance that may be connected to that Klipper (potential:
        those not known to have ended), and holds a promise from each."""
        if not self.want or now < self.started + START:
            return False
        if self.promise is not None and self.promise[1] > now:
            return False
        if any(n not in self.others for n in potential):
            return False
        return all(self.held.get(n, 0.) > now for n in self.needed(now))

    def decide(self, now, potential):
        """'stop' when serving and a promise ran out, 'start' when it may
        start, else None; serving follows."""
        if self.serving and not self.holds(now):
            self.serving = False
            return 'stop'
        if not self.serving and self.can_start(now, potential):
            self.serving = True
            return 'start'
        return None

    def missing(self, now):
        """The candidates whose promise this instance lacks now."""
        return [n for n in self.needed(now) if self.held.get(n, 0.) <= now]
