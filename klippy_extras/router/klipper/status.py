# What ROUTER_PRINTERS_LIST, router/printers/list and printer.router show:
# every instance, how this one knows it and how it is reached
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.


from ..peer.sansio.session import Phase

UNLISTED_HERE = "not listed here: add [router %s] to this config"


class Status:
    def __init__(self, printer, peers, mesh, relay, election, callers):
        self.printer, self.peers, self.mesh = printer, peers, mesh
        self.callers = callers    # who dials this instance unlisted
        # Routes from the relay's view, who serves from the election
        self.relay, self.election = relay, election

    # How each instance is reached
    def reached_name(self, name):
        hop = self.relay.routes().get(name)
        if hop is None:
            return 'not reached'
        return 'direct' if hop == name else 'relayed via %s' % (hop,)

    def reached(self, peer):
        routes = self.relay.routes()
        if peer.session.phase is Phase.UNLISTED:
            return "connected, it does not list '%s'" % (self.peers.own_name,)
        if peer.has_module or peer.name in routes:
            if peer.name not in routes and peer.ready:
                return "connected, not linked (it does not list '%s')" % (
                    self.peers.own_name,)
            return self.reached_name(peer.name)
        if not peer.ready:
            return 'not reached'
        election = self.election
        if election.is_serving(peer):
            return 'direct, served here'
        chosen = election.chosen(peer.kid) if peer.kid else None
        if chosen is not None and chosen is not peer:
            return 'direct, the same Klipper as %s' % (chosen.name,)
        server = election.server_of(peer.kid) if peer.kid else None
        if server not in (None, self.peers.own_name):
            return 'direct, served by %s' % (server,)
        return 'direct'

    def mesh_only_names(self):
        """Instances known from the mesh's cards that are no peer here."""
        return self.relay.known_names() - set(self.peers)

    def known_by(self, peer):
        if peer.known_by == 'configured' and self.peers.shared_file:
            return 'shared file'
        return peer.known_by

    def printers_list(self):
        state = self.printer.get_state_message()[1]
        out = [{'name': self.peers.own_name, 'connected': True,
                'ready': state == 'ready', 'state': state, 'module': True,
                'known_by': 'this instance', 'reached': 'this instance'}]
        relay = self.relay
        for name, peer in sorted(self.peers.items()):
            out.append({'name': name, 'connected': peer.session.session_up,
                        'ready': peer.ready, 'state': peer.session.state,
                        'module': peer.has_module,
                        'known_by': self.known_by(peer),
                        'reached': self.reached(peer)})
        routes = relay.routes()
        unlisted = self.callers.unlisted()
        for name in sorted(relay.known_names() - set(self.peers)):
            out.append({'name': name, 'connected': False,
                        'ready': name in routes, 'state': 'unknown',
                        'module': True, 'known_by': 'mesh',
                        'reached': self.reached_name(name)})
        for entry in out:
            if entry['name'] in unlisted:
                entry['reached'] += '; ' + UNLISTED_HERE % (entry['name'],)
        for name in sorted(set(unlisted) - {e['name'] for e in out}):
            out.append({'name': name, 'connected': True, 'ready': False,
                        'state': 'unknown', 'module': True,
                        'known_by': 'dials this instance',
                        'reached': UNLISTED_HERE % (name,)})
        return out

    def router_status(self):
        """printer.router: each peer's part is cached by the peer against
        the values it is made of; how it is known and reached is added
        here."""
        relay = self.relay
        peers = {}
        for name, peer in self.peers.items():
            peers[name] = dict(peer.get_status(), known_by=self.known_by(peer),
                               reached=self.reached(peer))
        instances = {name: self.reached_name(name) for name in
                     relay.known_names() - set(self.peers)}
        for name in self.callers.unlisted():
            instances[name] = UNLISTED_HERE % (name,)
        return {'name': self.peers.own_name, 'mesh': self.mesh,
                'peers': peers, 'instances': instances}
