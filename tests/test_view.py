# Unit tests of the mesh view, without I/O (router/mesh/sansio/view.py):
# cards, routes and the relay plan (the election: test_lease.py).
# The behaviour on real klippy processes is in test_mesh.py.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import itertools, random
import pytest
from router.mesh.sansio import view as mesh_view


def card(name, neighbors=(), plain=(), serving=(), seq=1, boot=1.):
    return mesh_view.Card(name, 'default', boot, seq, frozenset(neighbors),
                     frozenset(plain), frozenset(serving))


def view_of(own, links, plain=None, serving=None):
    """A view from own, with every instance's card holding its links."""
    plain, serving = plain or {}, serving or {}
    names = set(itertools.chain.from_iterable(links)) | {own}
    nbrs = {n: set() for n in names}
    for a, b in links:
        nbrs[a].add(b)
        nbrs[b].add(a)
    view = mesh_view.MeshView(own, 'default', 1.)
    view.update_own(nbrs[own], plain.get(own, ()), serving.get(own, ()))
    for n in names - {own}:
        view.accept(card(n, nbrs[n], plain.get(n, ()), serving.get(n, ())))
    return view


def test_card_round_trip_and_bad_cards():
    c = card('led', ['main'], ['0123abcd'], [])
    assert mesh_view.card_from_wire(mesh_view.card_to_wire(c)) == c
    good = mesh_view.card_to_wire(c)
    for bad in [None, [], dict(good, name='bad name'), dict(good, seq='1'),
                dict(good, boot=True), dict(good, neighbors='main'),
                dict(good, neighbors=['x'] * 65), dict(good, plain=[7]),
                dict(good, serving=['']), dict(good, mesh=None)]:
        with pytest.raises(ValueError):
            mesh_view.card_from_wire(bad)


def test_only_newer_cards_are_kept_and_the_number_is_bounded():
    view = mesh_view.MeshView('main', 'default', 1.)
    assert view.accept(card('led', seq=2))
    assert not view.accept(card('led', seq=1))
    assert not view.accept(card('led', seq=2))
    assert view.accept(card('led', seq=1, boot=2.))     # restarted
    assert not view.accept(card('main', seq=99))        # never our own
    for i in range(mesh_view.MAX_CARDS * 2):
        view.accept(card('x%d' % i))
    assert len(view.cards) == mesh_view.MAX_CARDS


def test_own_card_changes_only_when_its_content_does():
    view = mesh_view.MeshView('main', 'default', 1.)
    assert view.update_own({'led'}, (), ())
    seq = view.own.seq
    assert not view.update_own(['led'], [], [])
    assert view.own.seq == seq


def test_routes_in_a_chain_and_a_ring():
    view = view_of('a', [('a', 'b'), ('b', 'c'), ('c', 'd')])
    assert view.routes() == {'b': 'b', 'c': 'b', 'd': 'b'}
    ring = view_of('a', [('a', 'b'), ('b', 'c'), ('c', 'd'), ('d', 'e'),
                         ('e', 'a')])
    assert ring.routes() == {'b': 'b', 'c': 'b', 'e': 'e', 'd': 'e'}


def test_routes_avoiding_neighbors_that_refuse():
    # a-b-c-d and a-e-d: without b as first hop, c is reached through e
    # and d (and b itself, which e's side may pass on to)
    ring = view_of('a', [('a', 'b'), ('b', 'c'), ('c', 'd'), ('a', 'e'),
                         ('e', 'd')])
    assert ring.routes_avoiding({'b'}) == {'e': 'e', 'd': 'e', 'c': 'e',
                                           'b': 'e'}
    chain = view_of('a', [('a', 'b'), ('b', 'c')])
    assert chain.routes_avoiding({'b'}) == {}
    assert chain.routes() == {'b': 'b', 'c': 'b'}    # not changed


def test_a_dead_instance_is_unreachable_though_its_last_card_lists_links():
    view = view_of('a', [('a', 'b'), ('b', 'c')])
    # c died: b's new card no longer lists it, c's old card still lists b
    view.accept(card('b', ['a'], seq=5))
    assert view.routes() == {'b': 'b'}
    assert view.known() == {'b', 'c'}


def test_an_instances_own_card_beats_a_forged_one_passed_on():
    """A neighbor passes on a card in m1's name with a later boot time: it
    counts only while m1 is no neighbor, and m1's own cards replace it."""
    view = mesh_view.MeshView('m2', 'default', 1.)
    real = card('m1', ['m2'], ['k1'], ['k1'], seq=3, boot=5.)
    assert view.accept(real, direct=True, neighbors={'m1'})
    forged = card('m1', ['m2'], [], [], seq=1, boot=99.)
    assert not view.accept(forged, direct=False, neighbors={'m1', 'evil'})
    assert view.cards['m1'] == real
    # m1 restarted and sends its new card itself: taken, whatever its boot
    newer = card('m1', ['m2'], ['k1'], [], seq=1, boot=6.)
    assert view.accept(newer, direct=True, neighbors={'m1'})
    # m1 is no neighbor now: what others pass on about it counts again
    assert view.accept(forged, direct=False, neighbors={'evil'})


def test_seen_ids_are_bounded_and_forget_the_oldest():
    seen = mesh_view.SeenIds(3)
    assert [seen.first_time(k) for k in 'abca'] == [True, True, True, False]
    assert seen.first_time('d')            # 'a', the oldest, forgotten
    assert [seen.first_time(k) for k in 'cd'] == [False, False]
    assert seen.first_time('a')


def test_event_key_holds_the_body_and_ids_cannot_be_guessed():
    real = ('afc', 'runout', {'lane': '1'}, 'afc')
    ident = mesh_view.new_event_id()
    key = mesh_view.event_key(real[0], ident, *real[1:])
    seen = mesh_view.SeenIds()
    # A forged event under the real id, with another name, context or
    # source (or another origin), and the real event after it: all run
    for body in [('afc', 'noop', {}, 'afc'),
                 ('afc', 'runout', {'lane': '2'}, 'afc'),
                 ('afc', 'runout', {'lane': '1'}, 'led'),
                 ('led', 'runout', {'lane': '1'}, 'afc'), real]:
        assert seen.first_time(mesh_view.event_key(body[0], ident, *body[1:])), \
            body
    # The same event again (by another way, or replayed): once
    assert not seen.first_time(key)
    assert not seen.first_time(mesh_view.event_key(
        'afc', ident, 'runout', dict([('lane', '1')]), 'afc'))
    # Key order in the context is not part of the body
    assert mesh_view.event_key('a', 'i', 'e', {'x': 1, 'y': [2]}, 's') == \
        mesh_view.event_key('a', 'i', 'e', {'y': [2], 'x': 1}, 's')
    # Ids: 16 random bytes each, distinct, no counter between them
    ids = [mesh_view.new_event_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    steps = {int(b, 16) - int(a, 16) for a, b in zip(ids, ids[1:])}
    assert len(steps) == len(ids) - 1       # no fixed step
    assert not any(abs(s) < 2 ** 64 for s in steps)
    prefixes = {i[:12] for i in ids}
    assert len(prefixes) == len(ids)        # no shared prefix either


def flood(links, origin, lose=()):
    """Runs the relay plan hop by hop: how often each instance gets the
    event, and how many messages it took. lose: links that drop it."""
    nbrs = {}
    for a, b in links:
        nbrs.setdefault(a, set()).add(b)
        nbrs.setdefault(b, set()).add(a)
    got = {n: 0 for n in nbrs}
    got[origin] = 1
    queue = [(origin, None, [])]
    sent = 0
    seen = {origin}
    while queue:
        here, sender, skip = queue.pop(0)
        targets, new_skip = mesh_view.relay_plan(skip, nbrs[here], sender, here)
        for t in targets:
            sent += 1
            if (here, t) in lose or (t, here) in lose:
                continue
            got[t] += 1
            if t not in seen:
                seen.add(t)
                queue.append((t, here, new_skip))
    return got, sent


def test_relay_plan_full_mesh_sends_each_instance_one_message():
    names = ['n%d' % i for i in range(8)]
    links = list(itertools.combinations(names, 2))
    got, sent = flood(links, 'n3')
    assert set(got.values()) == {1}
    assert sent == len(names) - 1


@pytest.mark.parametrize('seed', range(20))
def test_relay_plan_reaches_everyone_in_random_connected_meshes(seed):
    rng = random.Random(seed)
    names = ['n%d' % i for i in range(rng.randint(3, 12))]
    links = [(names[i], rng.choice(names[:i])) for i in range(1, len(names))]
    links += [tuple(rng.sample(names, 2)) for _ in range(rng.randint(0, 8))]
    got, sent = flood(links, rng.choice(names))
    assert all(v >= 1 for v in got.values()), got


def test_relay_plan_hands_a_too_large_skip_set_back_small():
    targets, skip = mesh_view.relay_plan(['x%d' % i for i in range(200)],
                                    {'a'}, None, 'me')
    assert targets == ['a'] and skip == ['me']
