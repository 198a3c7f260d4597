# Unit tests of router/mesh/sansio/lease.py, the promises that choose one
# server per Klipper without the module: a simulated network of
# candidates, with stalls, cut links, kills and restarts at random, where
# no two may ever hold the lease at one moment. The same guarantees on
# real klippy processes are in test_served_once.py.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, random
import pytest
from router.mesh.sansio import lease
from router.peer.sansio import identity

STEP = .01


class Node:
    def __init__(self, name, now, seq):
        self.name = name
        self.claim = lease.Claim(name, now)
        self.claim.want = True
        self.inc = '%s-%d' % (name, seq)
        self.alive = True
        self.stalled_until = 0.
        self.stall_began = 0.
        self.next_tick = now
        self.inbox = []          # (deliver at, sender, msg)

    def stall(self, now, seconds):
        self.stall_began = now
        self.stalled_until = now + seconds

    def running(self, now):
        return self.alive and now >= self.stalled_until


class Net:
    """Candidates of one Klipper; every message takes 1 to 20 ms, a cut
    link loses it, a stalled node takes it when it wakes."""
    def __init__(self, names, rng, now=0., inbound=False):
        # inbound: every link was dialed by the other end, so an instance
        # counts only while linked (or while it may fence this one)
        self.inbound = inbound
        self.rng = rng
        # In a partial mesh each pair is dialed by one side only
        self.dials = {(a, b) for a in names for b in names
                      if a < b} if not inbound else {
            (a, b) if rng.random() < .5 else (b, a)
            for a in names for b in names if a < b}
        self.now = now
        self.nodes = {n: Node(n, now, 0) for n in names}
        self.cut = set()
        self.runs = 0
        self.holders = []       # (time, holders) samples

    def linked(self, a, b):
        return frozenset((a, b)) not in self.cut

    def send(self, a, b, msg):
        if not self.linked(a, b) or not self.nodes[b].alive:
            return
        # A link to a stalled node closes after PING_TIMEOUT (5 s) without
        # an answer: what is sent later is lost, what was sent before
        # waits in its socket
        stalled = self.nodes[b].stalled_until
        if stalled > self.now and self.nodes[b].stall_began + 5. < self.now:
            return
        self.nodes[b].inbox.append(
            (self.now + self.rng.uniform(.001, .02), a, msg))

    def neighbors(self, name):
        return {n for n, node in self.nodes.items() if n != name
                and node.alive and self.linked(name, n)}

    def step(self):
        self.now += STEP
        now = self.now
        for node in list(self.nodes.values()):
            if not node.running(now):
                continue
            due = [m for m in node.inbox if m[0] <= now]
            node.inbox = [m for m in node.inbox if m[0] > now]
            for _, sender, msg in due:
                self.deliver(node, sender, msg)
            if now >= node.next_tick:
                node.next_tick = now + lease.RENEW
                self.tick(node)
        holders = [n for n, node in self.nodes.items()
                   if node.running(now) and node.claim.holds(now)]
        assert len(holders) <= 1, (now, holders, self.cut)
        self.holders.append((now, holders))

    def tick(self, node):
        claim, now = node.claim, self.now
        for name in list(claim.others):
            if not self.nodes[name].alive:
                claim.forget(name)      # the process check of mesh/election.py
        if self.inbound:
            # Counts: whoever is linked now, and whom it dials (unless no
            # process listens there: it was killed)
            claim.present = self.neighbors(node.name) | {
                b for a, b in self.dials if a == node.name
                and self.nodes[b].alive}
        n, serving = claim.ask(now)
        for other in self.neighbors(node.name):
            self.send(node.name, other, ('ask', n, node.inc, claim.want,
                                         serving, claim.on_yours(other, now)))
        # Everyone knows of everyone (a shared mesh file): one that starts
        # hears from all that may serve before it does
        claim.decide(now, {n for n, o in self.nodes.items()
                           if o.alive and n != node.name})

    def deliver(self, node, sender, msg):
        claim, now = node.claim, self.now
        if msg[0] == 'ask':
            _, n, inc, want, serving, on_yours = msg
            granted = claim.answer(sender, inc, want, serving, on_yours,
                                   None, now)
            self.send(node.name, sender, ('reply', n, node.inc, granted,
                                          claim.want, claim.holds(now)))
        else:
            _, n, inc, granted, want, serving = msg
            claim.reply(sender, n, inc, granted, want, serving, None, now)

    def run(self, seconds):
        end = self.now + seconds
        while self.now < end:
            self.step()

    def holder(self):
        return self.holders[-1][1][0] if self.holders[-1][1] else None

    def restart(self, name):
        old = self.nodes[name]
        node = self.nodes[name] = Node(name, self.now, int(old.inc.split(
            '-')[1]) + 1)
        return node


def served_after(net, since, within):
    """The first moment after since that someone holds, if within."""
    for t, holders in net.holders:
        if t >= since and holders:
            return t - since <= within
    return False


def test_one_holder_then_takeover_after_a_stall():
    net = Net(['m1', 'm2', 'm3'], random.Random(1))
    net.run(4.)
    assert net.holder() == 'm1'
    stop = net.now
    net.nodes['m1'].stall(stop, 12.)
    net.run(5.)
    assert served_after(net, stop, 5.)
    assert net.holder() in ('m2', 'm3')
    net.run(10.)
    # m1 woke to a lease long gone, and to the stale answers of the asks
    # that queued while it stalled: the new server serves on, no gap
    taken = stop + 5.
    gaps = [t for t, holders in net.holders if t > taken and not holders]
    assert not gaps, (gaps[0], gaps[-1])
    assert net.holder() in ('m2', 'm3')


def test_the_stalled_servers_stale_answers_leave_no_gap_in_a_pair():
    net = Net(['m1', 'm2'], random.Random(7))
    net.run(4.)
    stop = net.now
    net.nodes['m1'].stall(stop, 12.)
    net.run(20.)
    gaps = [t for t, holders in net.holders if t > stop + 5. and not holders]
    assert not gaps, (gaps[0], gaps[-1])


def test_two_candidates_a_stalled_backup_pauses_then_service_resumes():
    net = Net(['afc', 'led'], random.Random(2))
    net.run(4.)
    assert net.holder() == 'afc'
    net.nodes['led'].stall(net.now, 6.)
    net.run(8.)
    assert net.holder() is not None


def test_a_kill_is_taken_over_at_once():
    net = Net(['m1', 'm2'], random.Random(3))
    net.run(4.)
    assert net.holder() == 'm1'
    net.nodes['m1'].alive = False
    killed = net.now
    net.run(3.)
    assert served_after(net, killed, 1.5)


def test_a_cut_link_never_gives_two_holders_and_heals():
    net = Net(['m1', 'm2'], random.Random(4))
    net.run(4.)
    net.cut.add(frozenset(('m1', 'm2')))
    net.run(20.)         # step() asserts at most one holder throughout
    net.cut.clear()
    healed = net.now
    net.run(5.)
    assert served_after(net, healed, 3.)


def test_a_restarted_instance_waits_out_what_it_may_have_promised():
    net = Net(['m1', 'm2'], random.Random(5))
    net.run(4.)
    assert net.holder() == 'm1'
    net.cut.add(frozenset(('m1', 'm2')))
    net.restart('m2')         # forgot its promises, cannot hear m1
    net.run(15.)


# LEASE_SEEDS=3000 runs as many schedules (12 in the suite)
@pytest.mark.parametrize('seed', range(int(os.environ.get('LEASE_SEEDS',
                                                          12))))
def test_random_stalls_cuts_kills_and_restarts_never_two_holders(seed):
    rng = random.Random(seed)
    names = ['m%d' % i for i in range(1, rng.choice((2, 3, 4)) + 1)]
    net = Net(names, rng, inbound=seed % 2 == 1)
    net.run(3.)
    for _ in range(60):
        what = rng.random()
        name = rng.choice(names)
        if what < .3:
            net.nodes[name].stall(net.now, rng.uniform(.1, 8.))
        elif what < .55:
            a, b = rng.sample(names, 2)
            pair = frozenset((a, b))
            if pair in net.cut:
                net.cut.discard(pair)
            else:
                net.cut.add(pair)
        elif what < .7:
            if net.nodes[name].alive:
                net.nodes[name].alive = False
            else:
                net.restart(name)
        elif what < .8:
            net.restart(name)
        net.run(rng.uniform(.05, 2.))
    # Everything healed: somebody serves again
    net.cut.clear()
    for name, node in net.nodes.items():
        node.stalled_until = 0.
        if not node.alive:
            net.restart(name)
    healed = net.now
    net.run(8.)
    assert served_after(net, healed, 5.)


def test_klipper_id_is_what_it_says_not_how_it_is_reached():
    info = {'hostname': 'u1', 'config_file': '/home/a/printer.cfg',
            'log_file': '/tmp/klippy.log', 'process_id': 12}
    a = identity.klipper_id(info, '/run/main.sock')
    assert a == identity.klipper_id(dict(info, process_id=99),
                                 'ws://localhost:7125/klippysocket')
    assert a != identity.klipper_id(dict(info, config_file='/x.cfg'), 'y')
    assert identity.klipper_id({}, 'a') != identity.klipper_id({}, 'b')
    assert len(a) <= 64
