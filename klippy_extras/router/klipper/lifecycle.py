# Lifecycle hooks: on_connect/on_disconnect and the ROUTER_ON_* macros
# here, and the old bridge's lifecycle macros on the Klipper instances
# without the module that this instance serves.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
from ..common import gcode_text
from ..common.timers import drop_timer

READY_HOOK_FALLBACK = 2.   # s: ROUTER_ON_READY even without the self link


class Lifecycle:
    def __init__(self, printer, peers, runner):
        self.reactor = printer.get_reactor()
        self.peers = peers
        self.runner = runner
        self.ready = False       # this instance's Klipper is ready
        self.announced = set()   # peers whose on_connect hooks ran
        self._ready_hook_done = False
        self._methods_registered = False
        self._ready_hook_timer = None
        self.is_serving = None   # (peer): the election's, set by connect()
        printer.register_event_handler("klippy:ready", self._on_ready)

    def connect(self, is_serving):
        """is_serving(peer): does this instance serve that Klipper without
        the module (the election knows)?"""
        self.is_serving = is_serving

    def _on_ready(self):
        # No pausing in a ready handler (mainline shuts down): only arm.
        self.ready = True
        # Peers that became ready while this instance was starting get
        # their hooks now, as if they had connected at this moment.
        for peer in self.peers.values():
            if peer.ready:
                self.peer_ready_changed(peer, True, 'ready')
        # ROUTER_ON_READY once this instance's own router/* remote methods
        # are registered, so its macros can call them at once.
        if self._methods_registered:
            self._run_ready_hook()
        else:
            self._ready_hook_timer = self.reactor.register_timer(
                self._run_ready_hook,
                self.reactor.monotonic() + READY_HOOK_FALLBACK)

    def own_methods_registered(self):
        self._methods_registered = True
        self._run_ready_hook()

    def _run_ready_hook(self, eventtime=None):
        if not self._ready_hook_done and self.ready:
            self._ready_hook_done = True
            self.runner.call_macro('ROUTER_ON_READY', {},
                                   "hook ROUTER_ON_READY", missing_ok=True)
        return self.reactor.NEVER

    def stop(self):
        self.ready = False
        self._ready_hook_timer = drop_timer(self.reactor,
                                            self._ready_hook_timer)

    def forget(self, name):
        """A peer dropped from this instance: no hook owed for it."""
        self.announced.discard(name)

    def peer_ready_changed(self, peer, ready, reason):
        # Hooks are G-code: none runs before this instance is ready. Each
        # ready peer is announced once, and its loss once.
        if (peer.is_self or not self.ready
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
                and self.is_serving(p)]

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
        if 'ROUTER_ON_READY' in peer.session.remote_macros:
            peer.run_line('ROUTER_ON_READY', 'hook ROUTER_ON_READY')
        for name in [self.peers.own_name] + sorted(self.announced
                                                - {peer.name}):
            self._stock_macro(peer, 'ROUTER_ON_CONNECTED', name)

    def _stock_macro(self, peer, macro, printer_name):
        if macro in peer.session.remote_macros:
            peer.run_line(gcode_text.command_line(
                macro, {'PRINTER': printer_name}), "hook %s" % (macro,))
