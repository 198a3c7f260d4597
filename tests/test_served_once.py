# A Klipper without the module, served by instances that run it: each of
# its calls runs once or not at all, and never late, whatever stalls
# (SIGSTOP), kills and cut links do; on real klippy processes. Every call
# is numbered; the Klipper prints each run (REC), and what an instance
# dropped it says in its klippy.log. The promises themselves are tested
# in test_lease.py.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, random, re, signal, threading, time
from fakepeer import FakePeer, Scenario, frame
from harness import ApiClient, wait_until
from linkproxy import LinkProxy
from macros import COMMON

BOUND = 3.        # s: a call runs this soon after it was made, or never
TAKEOVER = 5.     # s: after a server stalls, another serves within this
ALL = "gcode, query, subscribe, events"

PLAIN = """
[gcode_macro CALL]
gcode:
  {action_call_remote_method("router/gcode/script", target="plain",
                             script="REC N=" ~ params.N)}
"""
DROPPED = re.compile(r"router: dropped call \d+ from 'plain':"
                     r" 'router/gcode/script' .*'REC N=(\d+)'")


class Calls:
    """Calls CALL N=i on the Klipper without the module every interval
    from a thread, and records when each was made and when it ran."""
    def __init__(self, plain, interval=.25):
        self.plain = plain
        self.interval = interval
        self.made = {}
        self.runs = {}
        self.client = ApiClient(plain.sock)
        self.client.output = _Timed(self.runs)
        self.client.subscribe_output()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.n = 0

    def start(self):
        self._thread.start()
        return self

    def _loop(self):
        with ApiClient(self.plain.sock) as caller:
            while not self._stop.is_set():
                self.n += 1
                made = time.monotonic()
                caller.request('gcode/script',
                               {'script': 'CALL N=%d' % (self.n,)})
                self.made[self.n] = made
                self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join(10)

    def settle(self, nodes, quiet=BOUND + 1.):
        """Waits until nothing has run for a while, then checks every
        call: run at most once, never later than BOUND, and if not run,
        reported as dropped by one of nodes. Returns (ran, dropped)."""
        def quiet_now():
            last = max([t for ts in self.runs.values() for t in ts] or [0])
            return time.monotonic() - last > quiet
        wait_until(quiet_now, 30., interval=.2, what="calls settled")
        self.client.close()
        dropped = set()
        for node in nodes:
            dropped |= {int(n) for n in DROPPED.findall(node.log_text())}
        twice = {n: ts for n, ts in self.runs.items() if len(ts) > 1}
        assert not twice, "calls that ran more than once: %r" % (twice,)
        late = {n: round(ts[0] - self.made[n], 2)
                for n, ts in self.runs.items()
                if n in self.made and ts[0] - self.made[n] > BOUND}
        assert not late, "calls that ran later than %s s: %r" % (BOUND, late)
        # A call made after a takeover goes to the new server and to the
        # stalled one's socket: one runs it, the other drops it
        ran = set(self.runs)
        lost = set(self.made) - ran - dropped
        return ran, dropped, lost


class _Timed(list):
    """The API client's output list: each REC line also timed."""
    def __init__(self, runs):
        list.__init__(self)
        self.runs = runs

    def append(self, line):
        list.append(self, line)
        m = re.search(r'REC \{"N": "(\d+)"\}', line)
        if m:
            self.runs.setdefault(int(m.group(1)), []).append(
                time.monotonic())


def served_by(mesh, names):
    out = []
    for n in names:
        try:
            if mesh[n].router_status()['peers']['plain']['reached'] == (
                    'direct, served here'):
                out.append(n)
        except Exception:
            pass
    return out


def full_mesh(mesh, names):
    return mesh.add_shared_file(names, listed=('plain',))


def partial_mesh(mesh):
    """m2 dials m1 and plain; m1 lists only plain and admits m2."""
    mesh.add('m1', "[router]\nname: m1\nallow_unlisted: %s\n[router plain]"
             "\nsocket: %s\n" % (ALL, mesh.sock('plain')))
    mesh.add('m2', "[router]\nname: m2\n[router m1]\nsocket: %s\n"
             "[router plain]\nsocket: %s\n" % (mesh.sock('m1'),
                                              mesh.sock('plain')))


def stall_the_server(mesh, names):
    plain = mesh.add('plain', PLAIN + COMMON)
    mesh.start()
    wait_until(lambda: len(served_by(mesh, names)) == 1, 10.,
               what="one server")
    server = served_by(mesh, names)[0]
    calls = Calls(plain).start()
    time.sleep(3.)
    mesh[server].kill(signal.SIGSTOP)
    stopped = time.monotonic()
    time.sleep(12.)
    mesh[server].kill(signal.SIGCONT)
    time.sleep(4.)
    calls.stop()
    ran, dropped, lost = calls.settle([mesh[n] for n in names])
    # Served again within TAKEOVER: every call made after that ran
    after = [n for n, t in calls.made.items() if t > stopped + TAKEOVER]
    assert after and set(after) <= ran, sorted(set(after) - ran)
    assert not lost, "neither run nor reported dropped: %r" % (sorted(lost),)
    # The calls made while it stalled, before the takeover, were queued
    # to the stalled server: it dropped them when it woke
    assert dropped, "the stalled server dropped nothing"
    others = [n for n in names if n != server]
    wait_until(lambda: len(served_by(mesh, names)) == 1
               and served_by(mesh, names)[0] in others, 5.,
               what="one server after the stall")
    return calls


def test_a_stalled_server_in_a_full_mesh_is_replaced_and_runs_nothing_late(
        mesh):
    full_mesh(mesh, ('m1', 'm2', 'm3'))
    stall_the_server(mesh, ('m1', 'm2', 'm3'))


def test_a_stalled_server_in_a_partial_mesh_is_replaced_and_runs_nothing_late(
        mesh):
    partial_mesh(mesh)
    stall_the_server(mesh, ('m1', 'm2'))


def chaos_mesh(mesh, names):
    """Every instance lists the others and plain, each link through a
    proxy of its own that the test can cut."""
    proxies = {}
    for name in names:
        text = "[router]\nname: %s\n" % (name,)
        for other in names + ('plain',):
            if other == name:
                continue
            path = os.path.join(mesh.workdir, '%s-%s.sock' % (name, other))
            proxies[(name, other)] = LinkProxy(path, mesh.sock(other))
            text += "[router %s]\nsocket: %s\n" % (other, path)
        mesh.add(name, text)
    for proxy in proxies.values():
        proxy.start()
    return proxies


def disrupt(mesh, proxies, names, rng):
    """One disruption at random: (kind, what undoes it)."""
    name = rng.choice(names)
    node = mesh[name]
    what = rng.random()
    if what < .3:
        node.kill(signal.SIGSTOP)
        return 'stop', lambda: node.kill(signal.SIGCONT)
    if what < .45:
        node.kill()
        return 'kill', node.start
    other = rng.choice([n for n in names + ('plain',) if n != name])
    cut = [proxies[(name, other)]]
    if other != 'plain':
        cut.append(proxies[(other, name)])
    for p in cut:
        p.kill()
    return ('cut plain' if other == 'plain' else 'cut'), lambda: [
        p.restore() for p in cut]


def test_random_stalls_kills_and_cut_links_never_run_a_call_twice(mesh):
    """At least 300 calls while, at random, servers are stopped and
    resumed, killed and started again, and links cut and restored
    (between instances, and to the Klipper without the module)."""
    names = ('m1', 'm2', 'm3')
    rng = random.Random(22)
    proxies = chaos_mesh(mesh, names)
    plain = mesh.add('plain', PLAIN + COMMON)
    disruptions = []          # (kind, start, end)
    try:
        mesh.start()
        wait_until(lambda: len(served_by(mesh, names)) == 1, 10.,
                   what="one server")
        calls = Calls(plain, interval=.15).start()
        end = time.monotonic() + 55.
        while time.monotonic() < end:
            kind, undo = disrupt(mesh, proxies, names, rng)
            start = time.monotonic()
            time.sleep(rng.uniform(.3, 5.))
            undo()
            disruptions.append((kind, start, time.monotonic()))
            time.sleep(rng.uniform(.5, 3.))
        healed = time.monotonic()
        time.sleep(8.)
        calls.stop()
        ran, dropped, lost = calls.settle([mesh[n] for n in names])
        assert calls.n >= 300, calls.n
        after = [n for n, t in calls.made.items() if t > healed + TAKEOVER]
        assert after and set(after) <= ran, sorted(set(after) - ran)
        # A call neither run nor reported dropped was pushed to an instance
        # killed before it read it, or made while no instance was
        # registered on the Klipper (a server killed or its link to it
        # cut, until a takeover; Klipper itself then logs 'Remote Call
        # Error'): never else
        windows = [(s, e) for kind, s, e in disruptions
                   if kind in ('kill', 'cut plain')]
        unexplained = sorted(n for n in lost if not any(
            s - .5 <= calls.made[n] <= e + TAKEOVER + 3. for s, e in windows))
        assert not unexplained, (unexplained, disruptions)
        kinds = {}
        for kind, _, _ in disruptions:
            kinds[kind] = kinds.get(kind, 0) + 1
        print("calls %d: ran %d, dropped and reported %d, lost in kill or"
              " plain-cut windows %d; disruptions %r" % (
                  calls.n, len(ran), len(dropped - ran), len(lost), kinds))
        for name in names:
            assert 'Traceback' not in mesh[name].log_text(), name
    finally:
        for proxy in proxies.values():
            proxy.close()


def test_a_forged_card_or_lease_from_an_unlisted_neighbor_changes_nothing(
        mesh):
    """A client that m2 admits through allow_unlisted (any local process
    could be one) links as a neighbor and sends m2 a card in m1's name,
    with a later boot, saying m1 is connected to nothing and serves
    nothing; and asks for plain's lease in its own name, claiming it
    serves. One instance serves throughout, each call runs once, m2 keeps
    taking m1's own cards, and once the client is gone it cannot keep m2
    from taking over when m1 is killed."""
    full_mesh(mesh, ('m1', 'm2'))
    mesh['m2'].write_config(
        "[router]\nname: m2\nallow_unlisted: %s\n[include %s]\n" % (
            ALL, os.path.join(mesh.workdir, 'mesh.cfg')))
    plain = mesh.add('plain', PLAIN + COMMON)
    mesh.start()
    wait_until(lambda: served_by(mesh, ('m1', 'm2')) == ['m1'], 10.,
               what="m1 serves")
    from router.peer.sansio import identity
    kid = identity.klipper_id(plain.info(), None)
    with ApiClient(mesh['m2'].sock) as evil:
        evil.request('router/info', {'name': 'evil'})
        evil.request('router/mesh/link', {})
        forged = {'name': 'm1', 'mesh': 'default', 'boot': 1e12, 'seq': 1,
                  'neighbors': [], 'plain': [], 'serving': []}
        evil.request('router/mesh', {'kind': 'cards', 'cards': [forged]})
        calls = Calls(plain, interval=.1).start()
        for n in range(30):
            evil.request('router/mesh', {
                'kind': 'lease', 'klipper': kid, 'op': 'ask', 'n': n,
                'inc': 'evil', 'want': True, 'serving': True,
                'on_yours': True, 'proc': None})
            time.sleep(.1)
        calls.stop()
        ran, dropped, lost = calls.settle([mesh['m1'], mesh['m2']])
        assert ran == set(calls.made) and not lost
        assert served_by(mesh, ('m1', 'm2')) == ['m1']
        # m1's own card still counts on m2: m1 is reached directly
        assert mesh['m2'].router_status()['peers']['m1']['reached'] == \
            'direct'
    mesh['m1'].kill()
    killed = time.monotonic()
    wait_until(lambda: served_by(mesh, ('m2',)) == ['m2'], 5.,
               what="m2 takes over")
    assert time.monotonic() - killed < 3.5


class Forger:
    """A socket that discover: matches, answering as an instance with the
    module ('evil'), that pushes m2, once linked, a card in m1's name (a
    later boot, no Klipper, no links) and asks for plain's lease in its
    own name, saying it serves."""
    def __init__(self, kid):
        self.kid = kid
        self.pushed = 0

    def scenario(self):
        return Scenario('forger', 'open', hooks={
            'router/info': self.on_router_info,
            'register_remote_method': self.on_register})

    def on_router_info(self, conn, msg):
        conn.hooks['router/info'] = self.on_router_info
        return conn.reply(msg, result={
            'name': 'evil', 'mesh': 'default', 'version': '0.2.0',
            'peers': [], 'allow': ['gcode', 'query', 'subscribe', 'events'],
            'known': True})

    def on_register(self, conn, msg):
        conn.hooks['register_remote_method'] = self.on_register
        out = conn.reply(msg, result={})
        if (msg.get('params') or {}).get('remote_method') != \
                'router/link/m2':
            return out
        forged = {'name': 'm1', 'mesh': 'default', 'boot': 1e12, 'seq': 1,
                  'neighbors': [], 'plain': [], 'serving': []}
        msgs = [{'kind': 'cards', 'cards': [forged]}] + [
            {'kind': 'lease', 'klipper': self.kid, 'op': 'ask', 'n': n,
             'inc': 'evil', 'want': True, 'serving': True,
             'on_yours': True, 'proc': None} for n in range(3)]
        for i, m in enumerate(msgs):
            out += frame({'router': 'mesh', 'params': {'msg': m,
                                                        'ack': 100 + i}})
            self.pushed += 1
        return out


def test_a_forged_card_from_a_discovered_socket_changes_nothing(mesh):
    """The same forgeries from a socket that m2 discovered and took as an
    instance with the module. m3 is linked to m1 only: m2 reaches it
    through m1 as long as it takes m1's own card, not the forged one
    (which lists no links)."""
    full_mesh(mesh, ('m1', 'm2'))
    os.makedirs(os.path.join(mesh.workdir, 'evil'))
    shared = os.path.join(mesh.workdir, 'mesh.cfg')
    mesh['m2'].write_config("[router]\nname: m2\ndiscover: %s\n"
                            "[include %s]\n" % (mesh.sock('evil'), shared))
    mesh['m1'].write_config("[router]\nname: m1\n[include %s]\n"
                            "[router m3]\nsocket: %s\n" % (
                                shared, mesh.sock('m3')))
    mesh.add('m3', "[router]\nname: m3\n[router m1]\nsocket: %s\n" % (
        mesh.sock('m1'),))
    plain = mesh.add('plain', PLAIN + COMMON)
    mesh.start()
    wait_until(lambda: served_by(mesh, ('m1', 'm2')) == ['m1'], 10.,
               what="m1 serves")
    wait_until(lambda: mesh['m2'].router_status()['instances'].get('m3')
               == 'relayed via m1', 10., what="m2 reaches m3 through m1")
    from router.peer.sansio import identity
    forger = Forger(identity.klipper_id(plain.info(), None))
    fake = FakePeer(mesh.sock('evil'))
    fake.arm(forger.scenario())
    try:
        wait_until(lambda: forger.pushed >= 4, 10.,
                   what="m2 discovered the forger and linked")
        assert mesh['m2'].router_status()['peers']['evil']['known_by'] == \
            'discovered'
        calls = Calls(plain, interval=.1).start()
        time.sleep(2.)
        calls.stop()
        ran, dropped, lost = calls.settle([mesh['m1'], mesh['m2']])
        assert ran == set(calls.made) and not lost
        assert served_by(mesh, ('m1', 'm2')) == ['m1']
        # m1's own card still counts on m2: m3 is still reached through it
        assert mesh['m2'].router_status()['instances'].get('m3') == \
            'relayed via m1'
    finally:
        fake.stop()
    mesh['m1'].kill()
    killed = time.monotonic()
    wait_until(lambda: served_by(mesh, ('m2',)) == ['m2'], 5.,
               what="m2 takes over once the forger is gone")
    assert time.monotonic() - killed < 3.5
