# The [router] section: this instance in the mesh, its peers, its status
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging, os
from . import commands, gcode_text, trust
from .bridge import Bridge
from .callers import Callers
from .eventbus import EventBus
from .peer import Peer, PeerOptions
from .runner import LocalRunner
from .transport import drop_timer

READY_HOOK_FALLBACK = 2.   # s: ROUTER_ON_READY even without the self link


def _real_path(path):
    return os.path.realpath(os.path.expanduser(path))


class Router:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.reactor = self.printer.get_reactor()
        self._read_options(config)
        self.peers = {}
        self._own_socket = self._own_socket_path()
        self._ready = False
        self._announced = set()   # peers whose on_connect hooks ran
        self.runner = LocalRunner(self.printer, self._note_report)
        self.gcode = self.printer.lookup_object('gcode')
        self.gcode_macro = self.printer.load_object(config, 'gcode_macro')
        self.bridge = Bridge(self)
        self.eventbus = EventBus(self)
        self.self_peer = None
        if self._own_socket is not None:
            self.self_peer = Peer(self, PeerOptions(
                self.name, self._own_socket, self.request_timeout,
                self.reconnect_delay, self.reconnect_max_delay, None, None,
                False, trust.ALL), is_self=True)
        self._ready_hook_done = False
        self._methods_registered = False
        self._ready_hook_timer = None
        self.callers = Callers(self)
        self.printer.register_event_handler("klippy:ready", self._on_ready)
        self.printer.register_event_handler("klippy:disconnect",
                                            self._on_disconnect)
        commands.register(self)
        # Links start once the reactor runs, whatever the start-up gives:
        # an instance in startup, error or shutdown stays in the mesh, seen
        # by its peers and restartable from them.
        self._start_timer = self.reactor.register_timer(
            self._start_links, self.reactor.NOW)

    def _read_options(self, config):
        name = config.get('name')
        self.name = gcode_text.check_name(name)
        if self.name is None:
            raise config.error(
                "Option 'name' in section 'router': %r is not a valid"
                " instance name (use letters, digits, '_' and '-')" % (name,))
        # Defaults of every [router NAME]
        self.request_timeout = config.getfloat(
            'request_timeout', 30., above=0., maxval=86400.)
        self.reconnect_delay = config.getfloat(
            'reconnect_delay', .1, minval=.01, maxval=60.)
        self.reconnect_max_delay = config.getfloat(
            'reconnect_max_delay', 1., minval=.01, maxval=600.)

    def _own_socket_path(self):
        args = self.printer.get_start_args()
        path = args.get('apiserver') or args.get('apiserver_file')
        return _real_path(path) if path else None

    # [router NAME] sections (sections.py reads their options)
    def is_this_instance(self, name, socket, config):
        """A section with this instance's own name describes it (a mesh
        file that every instance includes lists them all). Raises
        config.error when its socket is another one."""
        if name != self.name:
            return False
        if self._own_socket is not None and (
                _real_path(socket) != self._own_socket):
            raise config.error(
                "Section '%s' names this instance ('%s'), but its socket %s"
                " is not this instance's API socket %s" % (
                    config.get_name(), name, socket, self._own_socket))
        return True

    def add_peer(self, options, config):
        """Checks a peer against this instance and the others; returns
        its Peer. Raises config.error."""
        section = config.get_name()
        if options.name in self.peers:
            raise config.error(
                "Section '%s': peer '%s' is defined twice (names are not"
                " case-sensitive)" % (section, options.name))
        real = _real_path(options.socket)
        if self._own_socket is not None and real == self._own_socket:
            raise config.error(
                "Section '%s': socket %s is this instance's own API socket,"
                " and its name is '%s': give this instance's section its own"
                " name (name: in [router]), or a peer its socket" % (
                    section, options.socket, self.name))
        for other in self.peers.values():
            if _real_path(other.options.socket) == real:
                raise config.error(
                    "Section '%s': peers '%s' and '%s' use the same socket %s"
                    % (section, other.name, options.name, options.socket))
        peer = self.peers[options.name] = Peer(self, options)
        return peer

    def lookup_peer(self, name):
        """The Peer for a TARGET value, or None (names are case-free)."""
        return self.peers.get(gcode_text.check_name(name) or '')

    # Lifecycle
    def _start_links(self, eventtime):
        for peer in self.all_links():
            peer.start()
        return self.reactor.NEVER

    def _on_ready(self):
        # No pausing in a ready handler (mainline shuts down): only arm.
        self._ready = True
        # Peers that became ready while this instance was starting get
        # their hooks now, as if they had connected at this moment.
        for peer in self.peers.values():
            if peer.ready:
                self.peer_ready_changed(peer, True, 'ready')
        # ROUTER_ON_READY once this instance's own router/* remote methods
        # are registered, so its macros can call them at once.
        if self._methods_registered:
            self.run_ready_hook()
        else:
            self._ready_hook_timer = self.reactor.register_timer(
                lambda e: self.run_ready_hook(),
                self.reactor.monotonic() + READY_HOOK_FALLBACK)

    def own_methods_registered(self):
        self._methods_registered = True
        self.run_ready_hook()

    def run_ready_hook(self):
        if not self._ready_hook_done and self._ready:
            self._ready_hook_done = True
            self.runner.call_macro('ROUTER_ON_READY', {},
                                   "hook ROUTER_ON_READY", missing_ok=True)
        return self.reactor.NEVER

    def all_links(self):
        links = list(self.peers.values())
        if self.self_peer is not None:
            links.append(self.self_peer)
        return links

    def _on_disconnect(self):
        # Must never raise: one raise skips every later disconnect handler.
        self._ready = False
        self.runner.stop()
        for timer in (self._ready_hook_timer, self._start_timer):
            drop_timer(self.reactor, timer)
        self._ready_hook_timer = self._start_timer = None
        for peer in self.all_links():
            try:
                peer.stop()
            except Exception:
                logging.exception("router: error stopping peer %s",
                                  peer.name)

    # Called by peers
    def peer_ready_changed(self, peer, ready, reason):
        # Hooks are G-code: none runs before this instance is ready. Each
        # ready peer is announced once, and its loss once.
        if (peer.is_self or not self._ready
                or ready == (peer.name in self._announced)):
            return
        if ready:
            self._announced.add(peer.name)
        else:
            self._announced.discard(peer.name)
        self._stock_lifecycle(peer, ready)
        if ready:
            hook, macro = 'on_connect', 'ROUTER_ON_CONNECTED'
            params = {'PRINTER': peer.name}
        else:
            hook, macro = 'on_disconnect', 'ROUTER_ON_DISCONNECTED'
            params = {'PRINTER': peer.name, 'REASON': reason}
        self.runner.run_template(getattr(peer.options, hook),
                                 "%s of peer '%s'" % (hook, peer.name))
        self.runner.call_macro(macro, params, "hook %s for peer '%s'"
                               % (macro, peer.name), missing_ok=True)

    def _stock_lifecycle(self, peer, ready):
        """The old bridge's lifecycle macros, on the peers without the
        module that this instance serves."""
        served = [p for p in self.peers.values()
                  if p.name in self._announced and not p.has_module
                  and p.options.serve]
        for other in served:
            if other is not peer:
                self._stock_macro(other, 'ROUTER_ON_CONNECTED' if ready
                                  else 'ROUTER_ON_DISCONNECTED', peer.name)
        if ready and peer in served:
            if 'ROUTER_ON_READY' in peer.remote_macros:
                peer.run_line('ROUTER_ON_READY', 'hook ROUTER_ON_READY')
            for name in [self.name] + sorted(self._announced - {peer.name}):
                self._stock_macro(peer, 'ROUTER_ON_CONNECTED', name)

    def _stock_macro(self, peer, macro, printer_name):
        if macro in peer.remote_macros:
            peer.run_line(gcode_text.command_line(
                macro, {'PRINTER': printer_name}), "hook %s" % (macro,))

    def run_line_on(self, name, line, what):
        peer = self.peers.get(name)
        if peer is not None:
            peer.run_line(line, what)

    def printers_list(self):
        state = self.printer.get_state_message()[1]
        out = [{'name': self.name, 'connected': True,
                'ready': state == 'ready', 'state': state, 'module': True}]
        for name, peer in sorted(self.peers.items()):
            out.append({'name': name, 'connected': peer.session.session_up,
                        'ready': peer.ready, 'state': peer.state,
                        'module': peer.has_module})
        return out

    def _note_report(self, text, peer_name):
        peer = self.peers.get(peer_name or '')
        if peer is not None:
            peer.note_failure(text)

    # printer.router: built on every call (each peer's part is cached
    # against the values it is made of), so it is never stale.
    def get_status(self, eventtime=None):
        return {'name': self.name,
                'peers': {name: peer.get_status()
                          for name, peer in self.peers.items()}}
