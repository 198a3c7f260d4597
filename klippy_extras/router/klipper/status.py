# What ROUTER_PRINTERS_LIST, router/printers/list and printer.router show:
# every instance, how this one knows it and how it is reached
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.


class Status:
    def __init__(self, printer, peers, mesh, relay):
        self.printer = printer
        self.peers = peers
        self.mesh = mesh
        self.relay = relay

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
                        'ready': peer.ready, 'state': peer.state,
                        'module': peer.has_module,
                        'known_by': self.known_by(peer),
                        'reached': relay.reached(peer)})
        routes = relay.routes()
        for name in sorted(relay.known_names() - set(self.peers)):
            out.append({'name': name, 'connected': False,
                        'ready': name in routes, 'state': 'unknown',
                        'module': True, 'known_by': 'mesh',
                        'reached': relay.reached_name(name)})
        return out

    def router_status(self):
        """printer.router: each peer's part is cached by the peer against
        the values it is made of; how it is known and reached is added
        here."""
        relay = self.relay
        peers = {}
        for name, peer in self.peers.items():
            peers[name] = dict(peer.get_status(), known_by=self.known_by(peer),
                               reached=relay.reached(peer))
        return {'name': self.peers.own_name, 'mesh': self.mesh,
                'peers': peers,
                'instances': {name: relay.reached_name(name) for name in
                              relay.known_names() - set(self.peers)}}
