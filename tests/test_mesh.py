# A mesh that forms itself, on real klippy processes: one shared file,
# discovery, events relayed exactly once through partial meshes with links
# killed and restored, and one server per Klipper without the module.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import concurrent.futures, functools, os, random, time
import pytest
from harness import ApiClient, ApiError, wait_until
from linkproxy import LinkProxy
from macros import COMMON

ALL = "gcode, query, subscribe, events"

# Every instance counts each 'tick' event it runs, and follows main
TICKS = """
[gcode_macro TICKED]
variable_n: 0
gcode:
  SET_GCODE_VARIABLE MACRO=TICKED VARIABLE=n VALUE={printer["gcode_macro TICKED"].n + 1}

[router event tick]
gcode: TICKED
"""


def ticks(node):
    return node.macro_vars('TICKED')['n']


def assert_full_mesh(mesh, names):
    for name in names:
        peers = mesh[name].router_status()['peers']
        assert sorted(peers) == sorted(set(names) - {name}), name
        assert all(p['ready'] and p['reached'] == 'direct'
                   for p in peers.values()), (name, peers)


def wait_full_mesh(mesh, names, timeout):
    def formed():
        try:
            assert_full_mesh(mesh, names)
            return True
        except (AssertionError, KeyError):
            return False
    wait_until(formed, timeout, what="every pair ready")


def fire_and_count(mesh, names, count, faults=None):
    """count events, each from an instance picked at random; every
    instance must run each exactly once. faults (event number ->
    function) run before the events they are keyed by."""
    before = {n: ticks(mesh[n]) for n in names}
    for i in range(count):
        if faults and i in faults:
            faults[i]()
        mesh[random.choice(names)].gcode("ROUTER_EVENT_TRIGGER EVENT=tick")
    want = {n: before[n] + count for n in names}
    try:
        wait_until(lambda: {n: ticks(mesh[n]) for n in names} == want, 15.,
                   what="every instance ran every event")
    except AssertionError:
        raise AssertionError("ran %r, want %r" % (
            {n: ticks(mesh[n]) for n in names}, want))
    time.sleep(1.)   # late duplicates would show now
    assert {n: ticks(mesh[n]) for n in names} == want


FIVE = ('main', 'led', 'afc', 'ace', 'chamber')


def test_five_instances_include_one_identical_mesh_file(mesh):
    shared = os.path.join(mesh.workdir, 'mesh.cfg')
    with open(shared, 'w') as f:
        for name in FIVE:
            f.write("[router %s]\nsocket: %s\n\n" % (name, mesh.sock(name)))
        f.write(TICKS)
    for name in FIVE:
        mesh.add(name, "[router]\nname: %s\n[include %s]\n%s" % (
            name, shared, COMMON))
    mesh.start()
    wait_full_mesh(mesh, FIVE, 10.)
    status = mesh['led'].router_status()
    assert status['peers']['main']['known_by'] == 'shared file'
    # The seed scenario's parts: G-code each way, following, events
    mesh['afc'].gcode("ROUTER_GCODE_SCRIPT TARGET=main WAIT=1"
                      " SCRIPT='MARK VALUE=4'")
    assert mesh['main'].macro_vars('MARK')['value'] == 4
    mesh['led'].gcode("ROUTER_OBJECTS_SUBSCRIBE TARGET=main"
                      " OBJECTS=print_stats:state CALLBACK=REC")
    wait_until(lambda: mesh['led'].router_status()['peers']['main']
               ['objects'].get('print_stats', {}).get('state') == 'standby')
    fire_and_count(mesh, FIVE, 20)


def discovering(mesh, name, extra=''):
    return ("[router]\nname: %s\ndiscover: %s\n%s\n%s%s" % (
        name, os.path.join(mesh.workdir, '*', 'api.sock'), extra, TICKS,
        COMMON))


def test_discovery_forms_the_mesh_and_a_late_instance_joins(mesh):
    for name in FIVE:
        mesh.add(name, discovering(mesh, name))
    mesh.add('other', discovering(mesh, 'other', 'mesh: other_printer'))
    mesh.start()
    wait_full_mesh(mesh, FIVE, 10.)
    assert mesh['main'].router_status()['peers']['led']['known_by'] == \
        'discovered'
    assert mesh['other'].router_status()['peers'] == {}
    fire_and_count(mesh, FIVE, 20)
    assert ticks(mesh['other']) == 0
    late = mesh.add('late', discovering(mesh, 'late'))
    late.start()
    late.wait_ready()
    joined = join_time(mesh, FIVE, 'late', 5.)
    assert joined < 2., "joined in %.2f s" % (joined,)
    wait_full_mesh(mesh, FIVE + ('late',), 1.)
    fire_and_count(mesh, FIVE + ('late',), 10)
    mesh['main'].gcode("ROUTER_GCODE_SCRIPT TARGET=late WAIT=1 SCRIPT=MARK")
    assert mesh['late'].macro_vars('MARK')['count'] == 1


def join_time(mesh, names, new, timeout):
    """Seconds from now until every instance has a direct ready link with
    new and new with each of them; each instance is watched by its own
    thread, so the time is not that of polling them in turn."""
    start = time.monotonic()
    def linked(name):
        st = mesh[name].router_status()['peers']
        want = set(names) if name == new else {new}
        return all(st.get(n, {}).get('ready') and st[n]['reached'] ==
                   'direct' for n in want)
    def watch(name):
        wait_until(lambda: linked(name), timeout, interval=.01)
        return time.monotonic() - start
    with concurrent.futures.ThreadPoolExecutor(len(names) + 1) as pool:
        return max(pool.map(watch, list(names) + [new]))


def test_discovered_instance_that_lists_nothing_is_refused_by_default(mesh):
    """Discovery needs both sides to discover (or allow_unlisted:): an
    instance this config neither lists nor discovers gets nothing."""
    mesh.add('main', "[router]\nname: main\n" + TICKS + COMMON)
    mesh.add('probe', discovering(mesh, 'probe'))
    mesh.start()
    # Connected and not ready: main refuses it everything
    wait_until(lambda: mesh['probe'].router_status()['peers']
               .get('main', {}).get('connected'), 5.)
    assert not mesh['probe'].router_status()['peers']['main']['ready']
    with pytest.raises(ApiError) as e:
        mesh['probe'].gcode("ROUTER_GCODE_SCRIPT TARGET=main SCRIPT=MARK")
    assert "'main' does not know instance 'probe'" in str(e.value)
    mesh['probe'].gcode("ROUTER_EVENT_TRIGGER EVENT=tick")
    time.sleep(1.)
    assert ticks(mesh['main']) == 0


# Partial meshes: each instance dials only the ones it lists, through a
# proxy the test can cut; the dialed side admits it with allow_unlisted.
def add_partial(mesh, edges, names):
    proxies = {}
    for name in names:
        text = "[router]\nname: %s\nallow_unlisted: %s\n" % (name, ALL)
        for a, b in edges:
            if a == name:
                path = os.path.join(mesh.workdir, '%s-%s.sock' % (a, b))
                proxies[(a, b)] = LinkProxy(path, mesh.sock(b))
                text += "[router %s]\nsocket: %s\n" % (b, path)
        mesh.add(name, text + TICKS + COMMON)
    for proxy in proxies.values():
        proxy.start()
    return proxies


def routes_complete(mesh, names):
    for name in names:
        st = mesh[name].router_status()
        reached = {n for n, p in st['peers'].items()
                   if p['reached'] != 'not reached'}
        reached |= {n for n, r in st['instances'].items()
                    if r != 'not reached'}
        if reached != set(names) - {name}:
            return False
    return True


def edge_up(mesh, dialer, dialed):
    """Both ends use the link (the dialed end sees the dialer linked)."""
    there = mesh[dialed].router_status()['instances']
    return (mesh[dialer].router_status()['peers'][dialed]['reached']
            == 'direct' and there.get(dialer) == 'direct')


@pytest.mark.parametrize('shape', ['chain', 'star'])
def test_events_reach_every_instance_once_in_a_partial_mesh(mesh, shape):
    names = ('a', 'b', 'c', 'd') if shape == 'star' else ('a', 'b', 'c')
    edges = ([('b', 'a'), ('c', 'a'), ('d', 'a')] if shape == 'star'
             else [('a', 'b'), ('b', 'c')])
    proxies = add_partial(mesh, edges, names)
    try:
        mesh.start()
        wait_until(lambda: routes_complete(mesh, names), 10.,
                   what="every instance reached")
        st = mesh['c'].router_status()
        hop = 'a' if shape == 'star' else 'b'
        assert st['instances']['b' if shape == 'star' else 'a'] == \
            'relayed via %s' % (hop,)
        fire_and_count(mesh, names, 200)
    finally:
        for proxy in proxies.values():
            proxy.close()


def test_ring_of_five_with_links_cut_and_restored_runs_each_event_once(mesh):
    names = ('a', 'b', 'c', 'd', 'e')
    edges = [(names[i], names[(i + 1) % 5]) for i in range(5)]
    proxies = add_partial(mesh, edges, names)
    rng = random.Random(12)
    try:
        mesh.start()
        wait_until(lambda: routes_complete(mesh, names), 10.,
                   what="every instance reached")
        # The fault schedule, fixed by the seed: before 20 of the 200
        # events one link of the ring is cut, the one cut before restored
        # first (one link down at a time: two cuts would split the ring)
        cuts = dict(zip(sorted(rng.sample(range(200), 20)),
                        (rng.choice(edges) for _ in range(20))))
        down = []
        def cut(edge):
            if down:
                proxies[down[0]].restore()
                wait_until(lambda: edge_up(mesh, *down[0]), 5.,
                           what="restored link back")
            down[:] = [edge]
            proxies[edge].kill()
        fire_and_count(mesh, names, 200, {
            i: functools.partial(cut, edge) for i, edge in cuts.items()})
        for name in names:
            log = mesh[name].log_text()
            assert 'Traceback' not in log, name
    finally:
        for proxy in proxies.values():
            proxy.close()


# One server per Klipper without the module
PLAIN = """
[gcode_macro CALL_MARK]
gcode:
  {action_call_remote_method("router/gcode/script", target="plain",
                             script="MARK")}
"""


def served_by(mesh, names):
    return [n for n in names if mesh[n].alive()
            and mesh[n].router_status()['peers']['plain']['reached']
            == 'direct, served here']


def test_one_server_per_plain_klipper_and_takeover(mesh):
    names = ('m1', 'm2', 'm3')
    mesh.add_shared_file(names, listed=('plain',))
    plain = mesh.add('plain', PLAIN + COMMON)
    mesh.start()
    mesh.wait_links()
    wait_until(lambda: served_by(mesh, names) == ['m1'], 5.,
               what="m1 serves plain")
    assert mesh['m2'].router_status()['peers']['plain']['reached'] == \
        'direct, served by m1'
    for i in range(100):
        plain.gcode("CALL_MARK")
    wait_until(lambda: plain.macro_vars('MARK')['count'] == 100, 10.)
    time.sleep(.5)
    assert plain.macro_vars('MARK')['count'] == 100
    mesh['m1'].kill()
    killed = time.monotonic()
    # Until a server takes over, plain's action_call_remote_method finds
    # no connection and Klipper only logs it ('Remote Call Error'), so
    # calls are made until one runs.
    while plain.macro_vars('MARK')['count'] == 100:
        assert time.monotonic() - killed < 3., "no server within 3 s"
        plain.gcode("CALL_MARK")
        time.sleep(.1)
    took = time.monotonic() - killed
    time.sleep(.5)
    assert plain.macro_vars('MARK')['count'] == 101, took
    assert served_by(mesh, names) == ['m2']
    for i in range(20):
        plain.gcode("CALL_MARK")
    wait_until(lambda: plain.macro_vars('MARK')['count'] == 121, 5.)
    time.sleep(.5)
    assert plain.macro_vars('MARK')['count'] == 121


# allow: on the paths the mesh adds, from the attacker's side
def test_relayed_event_meets_the_receivers_allow_for_its_origin(mesh):
    """a -> b -> c: c admits b but not a. a's events, relayed by b, do not
    run on c, and neither does one a raw client relays as b claiming a."""
    mesh.add('a', "[router]\nname: a\n[router b]\nsocket: %s\n%s%s" % (
        mesh.sock('b'), TICKS, COMMON))
    mesh.add('b', "[router]\nname: b\nallow_unlisted: %s\n[router c]\n"
             "socket: %s\n%s%s" % (ALL, mesh.sock('c'), TICKS, COMMON))
    mesh.add('c', "[router]\nname: c\n[router b]\nsocket: %s\n%s%s" % (
        mesh.sock('b'), TICKS, COMMON))
    mesh.start()
    wait_until(lambda: routes_complete(mesh, ('a', 'b', 'c')), 10.,
               what="every instance reached")
    for i in range(5):
        mesh['a'].gcode("ROUTER_EVENT_TRIGGER EVENT=tick")
    wait_until(lambda: ticks(mesh['b']) == 5, 5.)
    mesh['b'].gcode("ROUTER_EVENT_TRIGGER EVENT=tick")
    wait_until(lambda: ticks(mesh['c']) == 1, 5.)
    with ApiClient(mesh['c'].sock) as raw:
        raw.request('router/info', {'name': 'b'})
        raw.request('router/mesh', {
            'kind': 'event', 'origin': 'a', 'id': 'forged', 'hops': 1,
            'skip': [], 'event': 'tick', 'context': {}})
    time.sleep(1.)
    assert [ticks(mesh[n]) for n in 'abc'] == [6, 6, 1]


def test_allow_unlisted_grants_only_what_it_lists(mesh):
    mesh.add('a', "[router]\nname: a\n[router b]\nsocket: %s\n%s%s" % (
        mesh.sock('b'), TICKS, COMMON))
    mesh.add('b', "[router]\nname: b\nallow_unlisted: query\n%s%s" % (
        TICKS, COMMON))
    mesh.start()
    mesh.wait_links()
    a = mesh['a']
    a.gcode("ROUTER_OBJECTS_QUERY TARGET=b OBJECTS=print_stats")
    with pytest.raises(ApiError) as e:
        a.gcode("ROUTER_GCODE_SCRIPT TARGET=b SCRIPT=MARK")
    assert ("'b' does not accept gcode from 'a'" in str(e.value))
    with ApiClient(mesh['b'].sock) as raw:
        raw.request('router/info', {'name': 'a'})
        with pytest.raises(ApiError) as e:
            raw.request('router/gcode', {'script': 'MARK'})
        assert "allow: query in [router] allow_unlisted: on 'b'" in str(
            e.value)
        with pytest.raises(ApiError) as e:
            raw.request('router/mesh', {
                'kind': 'event', 'origin': 'a', 'id': '1', 'hops': 0,
                'skip': [], 'event': 'tick', 'context': {}})
        assert "'b' does not accept events from 'a'" in str(e.value)
    a.gcode("ROUTER_EVENT_TRIGGER EVENT=tick")
    a.client.wait_output(lambda l: "did not reach: b (it does not accept"
                         " events from 'a')" in l)
    time.sleep(.5)
    assert ticks(mesh['b']) == 0
    assert mesh['b'].macro_vars('MARK')['count'] == 0
