# One server per Klipper without the module: among the instances that
# reach each other and are connected to it, the first name serves its
# remote methods and lifecycle macros (mesh.MeshView decides). A server
# that is no longer first reconnects without registering; the next one
# registers once the old one's card says it stopped, so no call runs twice.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
from .transport import drop_timer

SETTLE = .3     # s: cards of a change arrive within this, then decide
FIRST = .5      # s after the links start: neighbors' cards are in


class Election:
    def __init__(self, router):
        self.router = router
        self.reactor = router.reactor
        self._timer = None
        self._earliest = None

    def start(self):
        self._earliest = self.reactor.monotonic() + FIRST
        self._timer = self.reactor.register_timer(self._decide,
                                                  self._earliest)

    def stop(self):
        self._timer = drop_timer(self.reactor, self._timer)

    def changed(self):
        """The mesh or a link changed: decide again shortly."""
        if self._timer is not None:
            when = max(self._earliest, self.reactor.monotonic() + SETTLE)
            self.reactor.update_timer(self._timer, when)

    def _decide(self, eventtime):
        router = self.router
        view = router.relay.view
        for peer in list(router.peers.values()):
            if peer.has_module or not peer.wants_serve:
                continue
            first = view.server_of(peer.address)
            if peer.serving and first not in (None, router.name):
                peer.stop_serving("'%s' serves it now" % (first,))
            elif (not peer.serving and first in (None, router.name)
                  and not view.others_serving(peer.address)):
                router.bridge.serve(peer)
                router.relay.refresh()
                router.greet_served(peer)
        return self.reactor.NEVER
