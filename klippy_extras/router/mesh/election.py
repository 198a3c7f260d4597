# One server per Klipper without the module, on klippy's reactor: the
# promises of lease.py carried as mesh messages to the neighbors, the
# served link registered or handed over, and each call checked against the
# lease at the moment it would run.
#
# A Klipper is known by what it says of itself (lease.klipper_id), so one
# reached by its socket here and by its Moonraker there is one Klipper.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging, os, random
from .sansio import lease
from ..common.timers import next_due
from ..common.timers import drop_timer

KIND = 'lease'
SOON = .02     # s: a change is looked at after the messages of its moment


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _start_time(stat):
    """Field 22 of /proc/PID/stat (and the state, field 3)."""
    fields = stat.rsplit(')', 1)[-1].split()
    return (fields[0], fields[19]) if len(fields) > 19 else (None, None)


def own_process():
    """[boot id, pid namespace, pid, start time]: lets an instance on the
    same host tell that this process has ended."""
    try:
        ns = os.readlink('/proc/self/ns/pid')
    except OSError:
        ns = None
    stat = _read('/proc/self/stat')
    start = _start_time(stat)[1] if stat else None
    return [_read('/proc/sys/kernel/random/boot_id'), ns, os.getpid(),
            start]


def process_ended(proc, mine):
    """True only when proc names a process of this host and pid namespace
    that no longer runs. Anything unsure is False."""
    if (not isinstance(proc, list) or len(proc) != 4 or None in mine
            or proc[:2] != mine[:2] or not isinstance(proc[2], int)
            or isinstance(proc[2], bool)):
        return False
    stat = _read('/proc/%d/stat' % (proc[2],))
    if stat is None:
        return True
    state, start = _start_time(stat)
    return state in ('Z', 'X') or start != proc[3]


class Election:
    def __init__(self, reactor, peers, bridge, relay, neighbors, lifecycle):
        self.peers = peers
        self.reactor = reactor
        self.bridge = bridge
        self.relay = relay            # this instance's card: refresh()
        # Promises go to neighbors only, never relayed: what an instance
        # promises counts only from that instance
        self.neighbors = neighbors
        self.lifecycle = lifecycle
        self.claims = {}       # Klipper id -> lease.Claim
        # The served links, by peer name: router/* registered on it, its
        # serving ending, why the lease is not held, calls dropped since
        # served. One connection each: forget() when it ends.
        self._registered = set()
        self._handing_over = set()
        self._lapse = {}
        self._dropped = {}
        self.inc = '%016x' % (random.SystemRandom().getrandbits(64),)
        self.proc = own_process()
        self._started = None
        self._timer = None

    def start(self):
        self._started = self.reactor.monotonic()
        self._timer = self.reactor.register_timer(
            self._tick, next_due(self._started, lease.RENEW))

    def stop(self):
        self._timer = drop_timer(self.reactor, self._timer)

    def changed(self):
        """A link or a peer changed: look again (and ask) shortly."""
        if self._timer is not None:
            self.reactor.update_timer(self._timer,
                                      self.reactor.monotonic() + SOON)

    def _claim(self, kid, now):
        """The claim on a Klipper this instance is connected to. One made
        now waits lease.START before it serves: whatever this instance
        promised about that Klipper without keeping a claim is over."""
        claim = self.claims.get(kid)
        if claim is None and len(self.claims) < lease.MAX_KLIPPERS:
            claim = self.claims[kid] = lease.Claim(self.peers.own_name, now)
        return claim

    def _candidates(self):
        """{Klipper id: [peers here connected to it, willing to serve]}"""
        out = {}
        for peer in self.peers.values():
            if (peer.wants_serve and not peer.has_module
                    and peer.kid is not None):
                out.setdefault(peer.kid, []).append(peer)
        return out

    def chosen(self, kid):
        """The one peer here that serves that Klipper, if this instance
        does: the first name among those connected to it."""
        peers = self._candidates().get(kid)
        return min(peers, key=lambda p: p.name) if peers else None

    def _tick(self, eventtime):
        try:
            self._decide_all(eventtime)
        except Exception:
            logging.exception("router: election")
        return next_due(eventtime, lease.RENEW)

    def _decide_all(self, now):
        wanted = self._candidates()
        for kid in wanted:
            self._claim(kid, now)
        neighbors = self.neighbors.names()
        potential = set(neighbors) | {
            p.name for p in self.peers.values() if p.may_be_candidate}
        for kid, claim in list(self.claims.items()):
            claim.want = kid in wanted
            claim.present = potential
            for name, other in list(claim.others.items()):
                if process_ended(other.proc, self.proc):
                    logging.info("router: '%s' has ended: its promises about"
                                 " %s are void", name, kid)
                    claim.forget(name)
            if claim.want:
                ask = self._message(kid, 'ask', *claim.ask(now))
                for name in sorted(neighbors):
                    self.neighbors.send(name, dict(
                        ask, on_yours=claim.on_yours(name, now)))
            self._decide(kid, claim, wanted.get(kid, []), now, potential)

    def _decide(self, kid, claim, peers, now, potential):
        chosen = min(peers, key=lambda p: p.name) if peers else None
        for peer in peers:
            if self.is_serving(peer) and peer is not chosen:
                self.hand_over(peer, "'%s' serves the same Klipper here"
                               % (chosen.name,))
        if chosen is None and not claim.serving:
            return
        decision = claim.decide(now, potential)
        if decision == 'stop':
            missing = claim.missing(now)
            why = ("no promise from %s" % (', '.join(
                "'%s'" % (n,) for n in missing),) if missing
                else "not connected to it")
            logging.info("router: lease on %s lost: %s", kid, why)
            if chosen is not None:
                self._lapse[chosen.name] = why
            self.relay.refresh()
        elif decision == 'start':
            logging.info("router: serving '%s' (promises from: %s)",
                         chosen.name, ', '.join(claim.needed(now)) or '-')
            self._lapse.pop(chosen.name, None)
            self._dropped.pop(chosen.name, None)
            if not self.is_serving(chosen):
                self._serve(chosen)
            else:
                self.relay.refresh()
        elif claim.serving and not (self.is_serving(chosen)
                                    or chosen.name in self._handing_over):
            self._serve(chosen)    # another link to the same Klipper
        if (chosen is not None and self.is_serving(chosen)
                and not claim.serving
                and self.server_of(kid) not in (None, self.peers.own_name)):
            # Registered without the lease, it drops (and reports) each
            # call; once another serves, its calls go there only
            self.hand_over(chosen, "'%s' serves it now"
                           % (self.server_of(kid),))

    def _serve(self, peer):
        self._registered.add(peer.name)
        self._dropped.pop(peer.name, None)
        self.bridge.serve(peer)
        self.relay.refresh()
        self.lifecycle.greet_served(peer)

    def hand_over(self, peer, why):
        """Stops serving the peer: what it pushes is dropped from now on,
        and once its Klipper has answered a last request (so every call it
        sent before is read and reported) the link closes, which ends the
        registration of router/* there."""
        if peer.name in self._handing_over:
            return
        self._handing_over.add(peer.name)
        peer.stop_serving(why, lambda: peer.name in self._handing_over)

    def forget(self, peer):
        """The peer's connection ended (or a new one began): nothing is
        registered on it."""
        self._registered.discard(peer.name)
        self._handing_over.discard(peer.name)
        self._lapse.pop(peer.name, None)

    def is_serving(self, peer):
        """router/* is registered on the peer's link by this instance."""
        return peer.name in self._registered

    def note_drop(self, peer):
        """A call of the peer dropped: (drops since served, why)."""
        count = self._dropped[peer.name] = self._dropped.get(peer.name, 0) + 1
        return count, self._lapse.get(peer.name) or (
            "another instance serves it now")

    def may_run(self, peer):
        """Is a call that the peer's Klipper pushed to run here now?"""
        claim = self.claims.get(peer.kid)
        return (claim is not None and self.is_serving(peer)
                and peer.name not in self._handing_over
                and claim.holds(self.reactor.monotonic())
                and self.chosen(peer.kid) is peer)

    # Messages
    def _message(self, kid, op, n, serving, granted=None, want=True):
        msg = {'kind': KIND, 'klipper': kid, 'op': op, 'n': n,
               'inc': self.inc, 'want': want, 'serving': serving,
               'proc': self.proc}
        if granted is not None:
            msg['granted'] = granted
        return msg

    def receive(self, sender, msg):
        """A lease message from a neighbor. Raises ValueError when bad."""
        kid, op, n, inc = (msg.get('klipper'), msg.get('op'), msg.get('n'),
                           msg.get('inc'))
        want, serving = msg.get('want'), msg.get('serving')
        if (not isinstance(kid, str) or len(kid) > 64
                or op not in ('ask', 'reply') or not isinstance(n, int)
                or not isinstance(inc, str) or len(inc) > 64
                or not isinstance(want, bool)
                or not isinstance(serving, bool)):
            raise ValueError("lease message without its fields")
        claim = self.claims.get(kid)
        now = self.reactor.monotonic()
        proc = msg.get('proc')
        if op == 'ask':
            if claim is None:
                # Not connected to it: a promise kept by waiting, should
                # this instance connect to it (see _claim)
                granted, mine, holds = True, False, False
            else:
                granted = claim.answer(sender, inc, want, serving,
                                       msg.get('on_yours') is True, proc,
                                       now)
                mine, holds = claim.want, claim.holds(now)
            if want:
                self.neighbors.send(sender, self._message(
                    kid, 'reply', n, holds, granted, mine))
        elif claim is not None:
            granted = msg.get('granted')
            if not isinstance(granted, bool):
                raise ValueError("lease reply without granted")
            claim.reply(sender, n, inc, granted, want, serving, proc, now)
            if granted and claim.want and not claim.serving:
                self.changed()

    # What printer.router and the list show
    def server_of(self, kid):
        """Who serves that Klipper, as far as this instance knows."""
        claim = self.claims.get(kid)
        if claim is None:
            return None
        if claim.serving:
            return self.peers.own_name
        now = self.reactor.monotonic()
        names = sorted(n for n, o in claim.others.items() if o.serving
                       and now - o.heard <= lease.LEASE)
        return names[0] if names else None
