# Lifecycle hooks: on_connect/on_disconnect and the ROUTER_ON_* macros
# here, and the old bridge's lifecycle macros on the Klipper instances
# without the module that this instance serves.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
from ..common import gcode_text


class Lifecycle:
    def __init__(self, peers, runner, is_ready):
        self.peers = peers
        self.runner = runner
        self.is_ready = is_ready     # () -> is this instance ready?
        self.announced = set()   # peers whose on_connect hooks ran

    def peer_ready_changed(self, peer, ready, reason):
        # Hooks are G-code: none runs before this instance is ready. Each
        # ready peer is announced once, and its loss once.
        if (peer.is_self or not self.is_ready()
                or ready == (peer.name in self.announced)):
            return
        if ready:
            self.announced.add(peer.name)
        else:
            self.announced.discard(peer.name)
        self._tell_served(peer, ready)
        if ready:
            self.greet_served(peer)
            hook, macro = 'on_connect', 'ROUTER_ON_CONNECTED'
            params = {'PRINTER': peer.name}
        else:
            hook, macro = 'on_disconnect', 'ROUTER_ON_DISCONNECTED'
            params = {'PRINTER': peer.name, 'REASON': reason}
        self.runner.run_template(getattr(peer.options, hook),
                                 "%s of peer '%s'" % (hook, peer.name))
        self.runner.call_macro(macro, params, "hook %s for peer '%s'"
                               % (macro, peer.name), missing_ok=True)

    def _served(self):
        return [p for p in self.peers.values()
                if p.name in self.announced and not p.has_module
                and p.serving]

    def _tell_served(self, peer, ready):
        for other in self._served():
            if other is not peer:
                self._stock_macro(other, 'ROUTER_ON_CONNECTED' if ready
                                  else 'ROUTER_ON_DISCONNECTED', peer.name)

    def greet_served(self, peer):
        """A served peer that is ready, or one this instance starts to
        serve: its ROUTER_ON_READY, and every instance it can reach."""
        if peer not in self._served():
            return
        if 'ROUTER_ON_READY' in peer.remote_macros:
            peer.run_line('ROUTER_ON_READY', 'hook ROUTER_ON_READY')
        for name in [self.peers.own_name] + sorted(self.announced
                                                - {peer.name}):
            self._stock_macro(peer, 'ROUTER_ON_CONNECTED', name)

    def _stock_macro(self, peer, macro, printer_name):
        if macro in peer.remote_macros:
            peer.run_line(gcode_text.command_line(
                macro, {'PRINTER': printer_name}), "hook %s" % (macro,))
