# What ROUTER_PRINTERS_LIST, router/printers/list and printer.router show:
# every instance, how this one knows it and how it is reached
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.


def known_by(router, peer):
    if peer.known_by == 'configured' and router.has_own_section:
        return 'shared file'
    return peer.known_by


def printers_list(router):
    state = router.printer.get_state_message()[1]
    out = [{'name': router.name, 'connected': True,
            'ready': state == 'ready', 'state': state, 'module': True,
            'known_by': 'this instance', 'reached': 'this instance'}]
    relay = router.relay
    for name, peer in sorted(router.peers.items()):
        out.append({'name': name, 'connected': peer.session.session_up,
                    'ready': peer.ready, 'state': peer.state,
                    'module': peer.has_module,
                    'known_by': known_by(router, peer),
                    'reached': relay.reached(peer)})
    for name in sorted(relay.view.known() - set(router.peers)):
        out.append({'name': name, 'connected': False,
                    'ready': name in relay.view.routes(), 'state': 'unknown',
                    'module': True, 'known_by': 'mesh',
                    'reached': relay.reached_name(name)})
    return out


def router_status(router):
    """printer.router: each peer's part is cached by the peer against the
    values it is made of; how it is known and reached is added here."""
    relay = router.relay
    peers = {}
    for name, peer in router.peers.items():
        peers[name] = dict(peer.get_status(), known_by=known_by(router, peer),
                           reached=relay.reached(peer))
    return {'name': router.name, 'mesh': router.mesh, 'peers': peers,
            'instances': {name: relay.reached_name(name)
                          for name in relay.view.known() - set(router.peers)}}
