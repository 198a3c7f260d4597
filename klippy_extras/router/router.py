# The [router] section: this instance in the mesh, its peers, its status
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging, os
from .common import gcode_text
from .common.timers import drop_timer
from .peer.callers import Callers
from .peer.peer import Peer, PeerHooks, PeerOptions, address_of
from .peer.peers import PeerTable
from .peer.sansio import trust
from .peer.watch import Watcher
from .mesh.discovery import Discovery, socket_key
from .mesh.election import Election
from .mesh.eventbus import EventBus
from .mesh.neighbors import Neighbors
from .mesh.relay import MeshRelay
from .klipper import commands, sections
from .klipper.doctor import Doctor
from .klipper.event_commands import EventCommands
from .klipper.object_commands import ObjectCommands
from .klipper.lifecycle import Lifecycle
from .klipper.old_bridge import Bridge
from .klipper.runner import LocalRunner
from .klipper.status import Status

def _real_path(path):
    return os.path.realpath(os.path.expanduser(path))


class Router:
    """Reads [router], makes the parts and wires them to each other;
    sections.py adds the peers. The parts get what they use, never this
    object (docs/Architecture.md)."""
    def __init__(self, config):
        self.printer = printer = config.get_printer()
        self.reactor = printer.get_reactor()
        self._read_options(config)
        self.peers = peers = PeerTable(self.name)
        self._own_socket = self._own_socket_path()
        self.gcode = printer.lookup_object('gcode')
        self.gcode_macro = printer.load_object(config, 'gcode_macro')
        self._make_parts(printer, peers)
        self._make_peer_hooks()
        if self._own_socket is not None:
            peers.self_peer = Peer(self.reactor, self.peer_options(
                self.name, self._own_socket, trust.ALL)._replace(
                    serve=False), self.hooks, is_self=True)
        self.discovery = None
        if self.discover:
            self.discovery = Discovery(self.reactor, peers, self.discover,
                                       self.mesh, self._own_socket,
                                       self.add_discovered)
            self.callers.on_stranger = self.discovery.scan_soon
        printer.register_event_handler("klippy:disconnect",
                                       self._on_disconnect)
        for handlers in (commands.RouterCommands, ObjectCommands):
            commands.register(self.gcode, handlers(
                printer, peers, self.runner, self.status))
        commands.register(self.gcode, EventCommands(self.eventbus,
                                                    self.name))
        commands.register(self.gcode, Doctor(printer, peers, self.callers,
                                             self._own_socket))
        # Links start once the reactor runs, whatever the start-up gives:
        # an instance in startup, error or shutdown stays in the mesh, seen
        # by its peers and restartable from them.
        self._start_timer = self.reactor.register_timer(
            self._start_links, self.reactor.NOW)

    def _make_parts(self, printer, peers):
        """Each part, given the parts it uses (lower layers first)."""
        self.runner = LocalRunner(printer, peers.note_failure)
        self.lifecycle = Lifecycle(printer, peers, self.runner)
        self.callers = Callers(printer, peers, self.mesh, self.allow_unlisted,
                               self.runner.run_now)
        self.bridge = Bridge(printer, peers, self.runner, self.callers,
                             self.request_timeout)
        self.eventbus = EventBus(printer, peers, self.runner, self.callers)
        self.watcher = Watcher(printer, self.callers)
        neighbors = Neighbors(printer, peers, self.callers,
                              self.mesh_changed)
        self.relay = MeshRelay(self.reactor, peers, self.mesh, self.callers,
                               neighbors, self.eventbus.dispatch)
        self.eventbus.connect(self.relay)
        self.election = Election(self.reactor, peers, self.bridge,
                                 self.relay, neighbors, self.lifecycle)
        self.relay.connect(self.election)
        self.lifecycle.connect(self.election.is_serving)
        self.status = Status(printer, peers, self.mesh, self.relay,
                             self.election, self.callers)
        self.bridge.connect(self.election, self.eventbus,
                            self.status.printers_list,
                            self.lifecycle.own_methods_registered)
        self._neighbors = neighbors

    def _make_peer_hooks(self):
        """What every Peer is given: whom to tell, who takes its pushes."""
        self.hooks = PeerHooks(
            own_name=self.name, runner=self.runner,
            ready_changed=self.peer_ready_changed,
            changed=self.mesh_changed,
            pushes={'call': self.bridge.handle_push,
                    'mesh': self._neighbors.handle_push,
                    'output': Peer.take_output},
            run_line_on=self.run_line_on, left_alone=self.leave_alone,
            serve_own=self.bridge.serve, link_reset=self.election.forget)

    def _read_options(self, config):
        name = config.get('name')
        self.name = gcode_text.check_name(name)
        if self.name is None:
            raise config.error(
                "Option 'name' in section 'router': %r is not a valid"
                " instance name (use letters, digits, '_' and '-')" % (name,))
        # Defaults of every [router NAME]
        self.link_defaults = sections.link_options(config)
        self.request_timeout = self.link_defaults['request_timeout']
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
            name=name, socket=socket, on_connect=None, on_disconnect=None,
            serve=True, allow=self.allow if allow is None else allow,
            **self.link_defaults)

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
        self.peers.shared_file = True
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
        peer = self.peers[options.name] = Peer(self.reactor, options,
                                               self.hooks)
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

    # Lifecycle
    def _start_links(self, eventtime):
        for peer in self.peers.with_self():
            peer.start()
        self.relay.start()
        self.election.start()
        if self.discovery is not None:
            self.discovery.start()
        return self.reactor.NEVER

    def add_discovered(self, name, path, link):
        """A peer found by discover:, on the link that found it; False if
        it cannot be added. It answered the probe as an instance with the
        module, and stays one: never served as a Klipper without it."""
        options = self.peer_options(name, path)._replace(
            serve=False, module_required=True)
        if self.peer_problem(options) is not None:
            return False
        peer = self.peers[options.name] = Peer(self.reactor, options,
                                               self.hooks, link=link)
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
            self.lifecycle.forget(peer.name)
            self.discovery.leave_alone(peer.address, key, why)
            self.mesh_changed()
        except Exception:
            logging.exception("router: error dropping peer %s", peer.name)

    def _on_disconnect(self):
        # Must never raise: one raise skips every later disconnect handler.
        self.runner.stop()
        self._start_timer = drop_timer(self.reactor, self._start_timer)
        for part in (self.lifecycle, self.discovery, self.election,
                     self.relay, self.watcher):
            if part is not None:
                part.stop()
        for peer in self.peers.with_self():
            try:
                peer.stop()
            except Exception:
                logging.exception("router: error stopping peer %s",
                                  peer.name)

    # Called by peers
    def peer_ready_changed(self, peer, ready, reason):
        if not peer.is_self:
            if ready and peer.has_module:
                self._neighbors.offer_way_back(peer)
            self.mesh_changed()
        self.lifecycle.peer_ready_changed(peer, ready, reason)

    def mesh_changed(self):
        self.relay.refresh()
        self.election.changed()

    def run_line_on(self, name, line, what):
        peer = self.peers.get(name)
        if peer is not None:
            peer.run_line(line, what)

    # printer.router: built on every call, so it is never stale
    def get_status(self, eventtime=None):
        return self.status.router_status()
