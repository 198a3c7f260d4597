# Event ids from the attacker's side, on real klippy processes: a neighbor
# that sees another instance's events tries to take that instance's next
# ids, and reuses an id it saw with another body. docs/SECURITY.md
# (guarantee 11) names these tests.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import re, threading, time
from harness import ApiClient, wait_until
from macros import COMMON

# main counts the 'tick' events it runs (afc's real ones) and the 'noop'
# events it runs (the attacker's), apart
COUNTS = """
[gcode_macro TICKED]
variable_n: 0
gcode:
  SET_GCODE_VARIABLE MACRO=TICKED VARIABLE=n VALUE={printer["gcode_macro TICKED"].n + 1}

[gcode_macro NOOPED]
variable_n: 0
gcode:
  SET_GCODE_VARIABLE MACRO=NOOPED VARIABLE=n VALUE={printer["gcode_macro NOOPED"].n + 1}

[router event tick]
gcode: TICKED

[router event noop]
gcode: NOOPED
"""


def count(node, macro):
    return node.macro_vars(macro)['n']


class Neighbor:
    """An attacker on main's API socket that names itself 'nb' (an
    instance main lists, allowed events) and links as a mesh neighbor:
    main pushes it every event it passes on, and takes its router/mesh
    messages as a neighbor's."""
    def __init__(self, path):
        self.api = ApiClient(path)
        self.acked = 0
        self._stop = threading.Event()
        self.api.request('router/info', {'name': 'nb'})
        self.api.request('register_remote_method', {
            'remote_method': 'router/link/nb',
            'response_template': {'router': 'mesh'}})
        self.api.request('router/mesh/link', {})

    def events(self):
        """Every event main pushed here, acknowledged as a neighbor
        does."""
        out = []
        for push in list(self.api.pushes):
            params = push.get('params', {})
            msg = params.get('msg') if push.get('router') == 'mesh' else None
            if isinstance(msg, dict) and msg.get('kind') == 'event':
                out.append(msg)
        return out

    def ack_all(self):
        acks = [p['params']['ack'] for p in list(self.api.pushes)
                if p.get('router') == 'mesh'][self.acked:]
        for ack in acks:
            self.api.request('router/mesh/ack', {'ack': ack})
        self.acked += len(acks)

    def send(self, origin, ident, event, context):
        self.api.request('router/mesh', {
            'kind': 'event', 'origin': origin, 'source': origin,
            'id': ident, 'hops': 1, 'skip': [origin], 'event': event,
            'context': context})

    def close(self):
        self.api.close()


def next_ids(seen, n):
    """The ids an attacker would guess come after seen: a prefix and a
    counter when it has that form, else the next numbers."""
    m = re.match(r'^(.*)\.(\d+)$', seen)
    if m:
        return ['%s.%d' % (m.group(1), int(m.group(2)) + k)
                for k in range(1, n + 1)]
    if re.match(r'^[0-9a-f]+$', seen):
        return ['%0*x' % (len(seen), int(seen, 16) + k)
                for k in range(1, n + 1)]
    return ['%s%d' % (seen, k) for k in range(1, n + 1)]


def test_neighbor_cannot_take_another_instances_event_ids(mesh):
    """afc fires tick events; nb, a neighbor of main, sees the first one
    passed on and then sends main do-nothing 'noop' events with origin afc
    under afc's guessed next ids, and one under the id it saw. main runs
    every one of afc's real events, and the forged ones only as what they
    are."""
    N = 6
    main = mesh.add_router_node('main', ['afc', 'nb'], COUNTS + COMMON)
    afc = mesh.add_router_node('afc', ['main'], COUNTS + COMMON)
    mesh.start('main', 'afc')
    wait_until(lambda: main.router_status()['peers']['afc']['reached']
               == 'direct' and afc.router_status()['peers']['main']
               ['reached'] == 'direct', 10., what="main and afc linked")
    nb = Neighbor(main.sock)
    try:
        wait_until(lambda: main.router_status()['peers']['nb']['reached']
                   == 'direct', 5., what="nb linked to main")
        afc.gcode("ROUTER_EVENT_TRIGGER EVENT=tick LANE=1")
        wait_until(lambda: [m for m in nb.events() if m['origin'] == 'afc'],
                   5., what="afc's event passed on to nb")
        first = [m for m in nb.events() if m['origin'] == 'afc'][0]
        assert first['event'] == 'tick' and first['context'] == {
            'LANE': '1'}
        assert count(main, 'TICKED') == 1
        # The attack: afc's next ids, taken by do-nothing events
        guesses = next_ids(first['id'], N)
        for ident in guesses:
            nb.send('afc', ident, 'noop', {})
        # The id seen, with another body: runs as what it is (a noop)
        nb.send('afc', first['id'], 'noop', {})
        # The real event replayed exactly: it ran once already
        nb.send('afc', first['id'], 'tick', {'LANE': '1'})
        wait_until(lambda: count(main, 'NOOPED') >= N, 5.,
                   what="the forged events ran as noop")
        assert count(main, 'TICKED') == 1
        # afc's real events: main runs every one
        for i in range(N):
            afc.gcode("ROUTER_EVENT_TRIGGER EVENT=tick LANE=%d" % (i + 2,))
        try:
            wait_until(lambda: count(main, 'TICKED') == 1 + N, 5.,
                       what="main ran all of afc's events")
        except AssertionError:
            raise AssertionError("main ran %d of afc's %d events" % (
                count(main, 'TICKED'), 1 + N))
        nb.ack_all()
        time.sleep(.5)     # a late duplicate would show now
        assert count(main, 'TICKED') == 1 + N
        assert count(main, 'NOOPED') == N + 1
        # afc ran its own, and none of the forged ones
        assert count(afc, 'TICKED') == 1 + N and count(afc, 'NOOPED') == 0
        # What nb saw: afc's ids are distinct and none was guessed
        real = [m for m in nb.events() if m['origin'] == 'afc'
                and m['event'] == 'tick']
        ids = [m['id'] for m in real]
        assert len(ids) == 1 + N and len(set(ids)) == 1 + N, ids
        assert not set(ids) & set(guesses), ids
        assert sorted(m['context']['LANE'] for m in real) == [
            str(i + 1) for i in range(1 + N)]
        for node in (main, afc):
            assert node.state() == 'ready'
            assert 'Traceback' not in node.log_text(), node.name
    finally:
        nb.close()
