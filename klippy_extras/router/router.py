# The [router] section: this instance in the mesh, its peers, its status
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging, os, weakref
from . import commands, events, gcode_text, subscriptions, trust
from .bridge import Bridge
from .eventbus import EventBus
from .peer import Peer, CLIENT_VERSION
from .runner import LocalRunner

READY_HOOK_FALLBACK = 2.   # s: ROUTER_ON_READY even without the self link


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
        self._ready = False
        self._announced = set()   # peers whose on_connect hooks ran
        self.runner = LocalRunner(self.printer, self._note_report)
        self.gcode = self.printer.lookup_object('gcode')
        self.gcode_macro = self.printer.load_object(config, 'gcode_macro')
        self.bridge = Bridge(self)
        self.eventbus = EventBus(self)
        self.self_peer = None
        if self._own_socket is not None:
            self.self_peer = Peer(self, self.name, self._own_socket,
                                  self.request_timeout, self.reconnect_delay,
                                  self.reconnect_max_delay, None, None,
                                  is_self=True)
        self._ready_hook_done = False
        self._methods_registered = False
        self._ready_hook_timer = None
        # API connection -> the instance name its router gave in router/info
        self.callers = weakref.WeakKeyDictionary()
        webhooks = self.printer.lookup_object('webhooks')
        webhooks.register_endpoint('router/info', self._handle_info)
        webhooks.register_endpoint('router/gcode', self._handle_gcode)
        self.printer.register_event_handler("klippy:ready", self._on_ready)
        self.printer.register_event_handler("klippy:disconnect",
                                            self._on_disconnect)
        commands.register(self)
        # Links start once the reactor runs, whatever the start-up gives:
        # an instance in startup, error or shutdown stays in the mesh, seen
        # by its peers and restartable from them.
        self._start_timer = self.reactor.register_timer(
            self._start_links, self.reactor.NOW)

    def _own_socket_path(self):
        args = self.printer.get_start_args()
        path = args.get('apiserver') or args.get('apiserver_file')
        return _real_path(path) if path else None

    def _handle_info(self, web_request):
        name = web_request.get('name', None)
        caller = gcode_text.check_name(name)
        if name is not None and caller is None:
            raise web_request.error("router/info: %.40r is not an instance"
                                    " name" % (name,))
        if caller is not None:
            self.callers[web_request.get_client_connection()] = caller
        who = self.caller_of(web_request)
        web_request.send({'name': self.name, 'version': CLIENT_VERSION,
                          'peers': sorted(self.peers),
                          'known': who.kind != trust.Caller.UNKNOWN,
                          'allow': sorted(who.allow)})

    # Permissions: what [router NAME] allows that instance to do here
    def caller_of(self, web_request):
        """The Caller behind an API request: the instance its router
        named in router/info on that connection, or this instance."""
        name = self.callers.get(web_request.get_client_connection())
        if name is None or name == self.name:
            return trust.Caller.local(self.name)
        peer = self.peers.get(name)
        if peer is None:
            return trust.Caller.unknown(name, self.name)
        return trust.Caller.instance(name, peer.allow, self.name)

    def check_caller(self, web_request, action):
        """Raises an API error if the caller may not do this here."""
        try:
            self.caller_of(web_request).require(action)
        except trust.Refused as e:
            raise web_request.error(str(e))

    def _handle_gcode(self, web_request):
        # G-code from a peer's router: gcode/script, with its permission
        self.check_caller(web_request, 'gcode')
        self.gcode.run_script(web_request.get_str('script'))
        web_request.send({})

    # [router NAME] and [router event NAME] sections
    def add_section(self, config):
        parts = config.get_name().split()
        if len(parts) >= 2 and parts[1] == 'event':
            return self.add_event_section(config)
        return self.add_peer(config)

    def add_event_section(self, config):
        parts = config.get_name().split()
        event = events.check_event(parts[2]) if len(parts) == 3 else None
        if event is None:
            raise config.error(
                "Section '%s': give one event name of letters, digits and"
                " '_.:/-', e.g. [router event filament_loaded]"
                % (config.get_name(),))
        self.eventbus.add_config_handlers(config, event)
        return EventSection(event)

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
        serve = config.getboolean('serve_remote_methods', True)
        allow = self._allow(config)
        peer = Peer(self, name, os.path.expanduser(socket_path),
                    request_timeout, first, maximum, on_connect,
                    on_disconnect, serve_remote_methods=serve, allow=allow)
        if standing is not None:
            peer.subs.add(standing)
        self.peers[name] = peer
        return PeerSection(peer)

    def _allow(self, config):
        allow, bad = trust.parse_allow(config.get(
            'allow', ', '.join(trust.ACTIONS)))
        if bad:
            raise config.error(
                "Option 'allow' in section '%s': unknown %s (choose from %s)"
                % (config.get_name(), ', '.join(bad),
                   ', '.join(trust.ACTIONS)))
        return allow

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
            for name in objects:
                subscriptions.check_followable(name)
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
        for attr in ('_ready_hook_timer', '_start_timer'):
            timer = getattr(self, attr)
            setattr(self, attr, None)
            if timer is not None:
                try:
                    self.reactor.unregister_timer(timer)
                except Exception:
                    pass
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

    def _stock_lifecycle(self, peer, ready):
        """The old bridge's lifecycle macros, on the peers without the
        module that this instance serves."""
        served = [p for p in self.peers.values()
                  if p.name in self._announced and not p.has_module
                  and p.serve_remote_methods]
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
            out.append({'name': name, 'connected': peer.session_up,
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


class EventSection:
    """The printer object of a [router event NAME] section."""
    def __init__(self, event):
        self.event = event


class PeerSection:
    """The printer object of a [router NAME] section. It deliberately has
    no get_status (the peer shows in printer.router) and nothing named
    'stats' (klippy calls every object's stats() once a second)."""
    def __init__(self, peer):
        self.peer = peer
