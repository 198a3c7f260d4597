# The [router] section: this instance in the mesh, its peers, its status
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging, os
from . import commands, gcode_text, subscriptions
from .peer import Peer
from .runner import LocalRunner


def _real_path(path):
    return os.path.realpath(os.path.expanduser(path))


class Router:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.reactor = self.printer.get_reactor()
        name = config.get('name')
        self.name = gcode_text.check_name(name)
        if self.name is None:
            raise config.error(
                "Option 'name' in section 'router': %r is not a valid"
                " instance name (use letters, digits, '_' and '-')" % (name,))
        self.request_timeout = config.getfloat(
            'request_timeout', 30., above=0., maxval=86400.)
        self.reconnect_delay = config.getfloat(
            'reconnect_delay', .1, minval=.01, maxval=60.)
        self.reconnect_max_delay = config.getfloat(
            'reconnect_max_delay', 1., minval=.01, maxval=600.)
        self.peers = {}
        self._own_socket = self._own_socket_path()
        self._status = None
        self._started = False
        self.runner = LocalRunner(self.printer)
        self.gcode = self.printer.lookup_object('gcode')
        self.gcode_macro = self.printer.load_object(config, 'gcode_macro')
        self.printer.register_event_handler("klippy:ready", self._on_ready)
        self.printer.register_event_handler("klippy:disconnect",
                                            self._on_disconnect)
        commands.register(self)

    def _own_socket_path(self):
        args = self.printer.get_start_args()
        path = args.get('apiserver') or args.get('apiserver_file')
        return _real_path(path) if path else None

    # [router NAME] sections
    def add_peer(self, config):
        parts = config.get_name().split()
        name = gcode_text.check_name(parts[1]) if len(parts) == 2 else None
        if name is None:
            raise config.error(
                "Section '%s': the peer name must be one word of letters,"
                " digits, '_' and '-', e.g. [router led]" % (
                    config.get_name(),))
        if name == self.name:
            raise config.error(
                "Section '%s': '%s' is this instance's own name (option"
                " 'name' in [router]); list only the other instances" % (
                    config.get_name(), name))
        if name in self.peers:
            raise config.error(
                "Section '%s': peer '%s' is defined twice (names are not"
                " case-sensitive)" % (config.get_name(), name))
        socket_path = config.get('socket')
        real = _real_path(socket_path)
        if self._own_socket is not None and real == self._own_socket:
            raise config.error(
                "Section '%s': socket %s is this instance's own API socket;"
                " give the socket of the peer's klippy (its -a path)" % (
                    config.get_name(), socket_path))
        for other in self.peers.values():
            if _real_path(other.socket_path) == real:
                raise config.error(
                    "Section '%s': peers '%s' and '%s' use the same socket %s"
                    % (config.get_name(), other.name, name, socket_path))
        request_timeout = config.getfloat(
            'request_timeout', self.request_timeout, above=0., maxval=86400.)
        first = config.getfloat('reconnect_delay', self.reconnect_delay,
                                minval=.01, maxval=60.)
        maximum = config.getfloat('reconnect_max_delay',
                                  self.reconnect_max_delay,
                                  minval=.01, maxval=600.)
        on_connect = self.gcode_macro.load_template(config, 'on_connect', '')
        on_disconnect = self.gcode_macro.load_template(
            config, 'on_disconnect', '')
        standing = self._standing_subscription(config)
        peer = Peer(self, name, os.path.expanduser(socket_path),
                    request_timeout, first, maximum, on_connect,
                    on_disconnect)
        if standing is not None:
            peer.subs.add(standing)
        self.peers[name] = peer
        self._status = None
        return PeerSection(peer)

    def _standing_subscription(self, config):
        text = config.get('subscribe', None)
        callback = config.get('on_update', '').strip().upper()
        if text is None:
            if callback:
                raise config.error("Section '%s': on_update needs a"
                                   " 'subscribe' option" % (
                                       config.get_name(),))
            return None
        try:
            objects = subscriptions.parse_objects(text)
        except ValueError as e:
            raise config.error(
                "Option 'subscribe' in section '%s': %s (expected e.g."
                " print_stats:state, heater_generic chamber:temperature)"
                % (config.get_name(), e))
        if callback and not gcode_text.MACRO_RE.match(callback):
            raise config.error("Option 'on_update' in section '%s': '%s' is"
                               " not a macro name" % (config.get_name(),
                                                      callback))
        return subscriptions.Subscription(callback, objects,
                                          from_config=True)

    def lookup_peer(self, name):
        """The Peer for a TARGET value, or None (names are case-free)."""
        return self.peers.get(gcode_text.check_name(name) or '')

    # Lifecycle
    def _on_ready(self):
        # No pausing in a ready handler (mainline shuts down): only arm.
        self._started = True
        for peer in self.peers.values():
            peer.start()
        self.runner.call_macro('ROUTER_ON_READY', {},
                               "hook ROUTER_ON_READY", missing_ok=True)

    def _on_disconnect(self):
        # Must never raise: one raise skips every later disconnect handler.
        self._started = False
        self.runner.stop()
        for peer in self.peers.values():
            try:
                peer.stop()
            except Exception:
                logging.exception("router: error stopping peer %s",
                                  peer.name)

    # Called by peers
    def peer_changed(self, peer):
        self._status = None

    def peer_ready_changed(self, peer, ready, reason):
        if not self._started:
            return
        if ready:
            template, macro = peer.on_connect, 'ROUTER_ON_CONNECTED'
            params = {'PRINTER': peer.name}
        else:
            template, macro = peer.on_disconnect, 'ROUTER_ON_DISCONNECTED'
            params = {'PRINTER': peer.name, 'REASON': reason}
        what = "%s of peer '%s'" % (
            'on_connect' if ready else 'on_disconnect', peer.name)
        self.runner.run_template(template, what)
        self.runner.call_macro(macro, params, "hook %s for peer '%s'"
                               % (macro, peer.name), missing_ok=True)

    # printer.router
    def get_status(self, eventtime=None):
        status = self._status
        if status is None:
            status = self._status = {
                'name': self.name,
                'peers': {name: peer.get_status()
                          for name, peer in self.peers.items()}}
        return status


class PeerSection:
    """The printer object of a [router NAME] section. It deliberately has
    no get_status (the peer shows in printer.router) and nothing named
    'stats' (klippy calls every object's stats() once a second)."""
    def __init__(self, peer):
        self.peer = peer
