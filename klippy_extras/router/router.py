# The [router] section: this instance in the mesh, its peers, its status
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging, os
from . import commands, gcode_text, sections, status, trust
from .bridge import Bridge
from .callers import Callers
from .discovery import Discovery, socket_key
from .election import Election
from .eventbus import EventBus
from .lifecycle import Lifecycle
from .peer import Peer, PeerOptions, address_of
from .relay import MeshRelay
from .runner import LocalRunner
from .transport import drop_timer
from .watch import Watcher

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
        self.has_own_section = False   # a mesh file lists this instance
        self.runner = LocalRunner(self.printer, self._note_report)
        self.lifecycle = Lifecycle(self)
        self.gcode = self.printer.lookup_object('gcode')
        self.gcode_macro = self.printer.load_object(config, 'gcode_macro')
        self.bridge = Bridge(self)
        self.eventbus = EventBus(self)
        self.self_peer = None
        if self._own_socket is not None:
            self.self_peer = Peer(self, self.peer_options(
                self.name, self._own_socket, trust.ALL)._replace(
                    serve=False), is_self=True)
        self._ready_hook_done = False
        self._methods_registered = False
        self._ready_hook_timer = None
        self.callers = Callers(self)
        self.watcher = Watcher(self)
        self.relay = MeshRelay(self, self.mesh)
        self.election = Election(self, self.bridge, self.relay,
                                 self.lifecycle)
        self.bridge.election = self.election
        self.relay.attach_election(self.election)
        self.discovery = None
        if self.discover:
            self.discovery = Discovery(self, self.discover)
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
        self.allow = sections.read_allow(config)
        self.allow_unlisted = sections.read_allow(config, 'allow_unlisted',
                                                  ())
        mesh = config.get('mesh', 'default')
        self.mesh = gcode_text.check_name(mesh)
        if self.mesh is None:
            raise config.error(
                "Option 'mesh' in section 'router': %r is not a valid mesh"
                " name (use letters, digits, '_' and '-')" % (mesh,))
        self.discover = [os.path.expanduser(p.strip()) for p in config.get(
            'discover', '').split('\n') if p.strip()]

    def peer_options(self, name, socket, allow=None):
        """Options of a peer that has no section: the defaults here."""
        return PeerOptions(
            name, socket, self.request_timeout, self.reconnect_delay,
            self.reconnect_max_delay, None, None, True,
            self.allow if allow is None else allow)

    own_real_socket = property(lambda self: self._own_socket)

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
        self.has_own_section = True
        if self._own_socket is not None and socket is not None and (
                _real_path(socket) != self._own_socket):
            raise config.error(
                "Section '%s' names this instance ('%s'), but its socket %s"
                " is not this instance's API socket %s" % (
                    config.get_name(), name, socket, self._own_socket))
        return True

    def add_peer(self, options, config):
        """Checks a peer against this instance and the others; returns
        its Peer. Raises config.error."""
        problem = self.peer_problem(options)
        if problem is not None:
            raise config.error("Section '%s': %s" % (config.get_name(),
                                                     problem))
        peer = self.peers[options.name] = Peer(self, options)
        return peer

    def peer_problem(self, options):
        """Why a peer cannot be added, or None."""
        if options.name in self.peers or options.name == self.name:
            return ("peer '%s' is defined twice (names are not"
                    " case-sensitive)" % (options.name,))
        address = address_of(options)
        if self._own_socket is not None and address == self._own_socket:
            return ("socket %s is this instance's own API socket, and its"
                    " name is '%s': give this instance's section its own"
                    " name (name: in [router]), or a peer its socket" % (
                        options.socket, self.name))
        for other in self.peers.values():
            if other.address == address:
                return ("peers '%s' and '%s' use the same %s %s" % (
                    other.name, options.name,
                    'socket' if options.remote is None else 'url', address))
        return None

    def lookup_peer(self, name):
        """The Peer for a TARGET value, or None (names are case-free)."""
        # A name as configured is one dict lookup, on every hop
        peer = self.peers.get(name)
        if peer is not None:
            return peer
        return self.peers.get(gcode_text.check_name(name) or '')

    # Lifecycle
    def _start_links(self, eventtime):
        for peer in self.all_links():
            peer.start()
        self.relay.start()
        self.election.start()
        if self.discovery is not None:
            self.discovery.start()
        return self.reactor.NEVER

    def add_discovered(self, options, link):
        """A peer found by discover:, on the link that found it; False if
        it cannot be added. It answered the probe as an instance with the
        module, and stays one: never served as a Klipper without it."""
        options = options._replace(serve=False, module_required=True)
        if self.peer_problem(options) is not None:
            return False
        peer = self.peers[options.name] = Peer(self, options, link=link)
        peer.known_by = 'discovered'
        peer.start()
        return True

    def leave_alone(self, peer, why):
        """A discovered peer whose handshake says it runs no module (on
        its link, closed now): dropped, its socket left alone until the
        file changes. From the link's callback: the peer goes on the next
        reactor pass, outside it."""
        if peer.removed or self.discovery is None:
            return
        peer.removed = True
        key = socket_key(peer.address)   # the socket file that said so
        self.reactor.register_callback(
            lambda eventtime: self._drop_peer(peer, key, why))

    def _drop_peer(self, peer, key, why):
        # A reactor callback: nothing may escape it
        try:
            if self.peers.get(peer.name) is peer:
                del self.peers[peer.name]
            peer.stop()
            self.lifecycle.announced.discard(peer.name)
            self.discovery.leave_alone(peer.address, key, why)
            self.mesh_changed()
        except Exception:
            logging.exception("router: error dropping peer %s", peer.name)

    def _on_ready(self):
        # No pausing in a ready handler (mainline shuts down): only arm.
        self._ready = True
        # Peers that became ready while this instance was starting get
        # their hooks now, as if they had connected at this moment.
        for peer in self.peers.values():
            if peer.ready:
                self.lifecycle.peer_ready_changed(peer, True, 'ready')
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
        for part in (self.discovery, self.election, self.relay,
                     self.watcher):
            if part is not None:
                part.stop()
        for peer in self.all_links():
            try:
                peer.stop()
            except Exception:
                logging.exception("router: error stopping peer %s",
                                  peer.name)

    # Called by peers
    is_ready = property(lambda self: self._ready)

    def peer_ready_changed(self, peer, ready, reason):
        if not peer.is_self:
            if ready and peer.has_module:
                self.relay.peer_linked(peer)
            self.mesh_changed()
        self.lifecycle.peer_ready_changed(peer, ready, reason)

    def mesh_changed(self):
        self.relay.refresh()
        self.election.changed()

    def run_line_on(self, name, line, what):
        peer = self.peers.get(name)
        if peer is not None:
            peer.run_line(line, what)

    def printers_list(self):
        return status.printers_list(self)

    def _note_report(self, text, peer_name):
        peer = self.peers.get(peer_name or '')
        if peer is not None:
            peer.note_failure(text)

    # printer.router: built on every call, so it is never stale
    def get_status(self, eventtime=None):
        return status.router_status(self)
