# A peer instance: its link, its Klipper state and its lifecycle hooks
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging
from .framing import ProtocolError
from .link import PeerLink, LinkError
from .subscriptions import SubscriptionSet, callback_params
from .gcode_text import command_line

PING_INTERVAL = 2.       # seconds between keepalive requests
PING_TIMEOUT = 5.        # unanswered this long: the peer is unresponsive
HANDSHAKE_TIMEOUT = 10.
KLIPPER_STATES = ('startup', 'ready', 'error', 'shutdown')
STATUS_TEMPLATE = {'router': 'status'}
CLIENT_VERSION = "0.2.0"
# What a peer that is connected but not ready still takes as G-code
NOT_READY_COMMANDS = ('FIRMWARE_RESTART', 'RESTART', 'STATUS')


class PeerError(Exception):
    """A request could not be sent to the peer; the text says why."""


class Peer:
    def __init__(self, router, name, socket_path, request_timeout,
                 first_delay, max_delay, on_connect, on_disconnect,
                 is_self=False, serve_remote_methods=True,
                 allow=frozenset()):
        self.router = router
        # The link to this instance's own socket carries its macros'
        # action_call_remote_method("router/...") calls.
        self.is_self = is_self
        self.serve_remote_methods = serve_remote_methods
        self.has_module = False
        self.remote_macros = frozenset()
        self.allow = allow                 # what the peer may do here
        self.remote_allow = None           # what it lets us do there
        self.remote_known = True           # does it list this instance?
        self.serving = False               # router/* registered on it
        self.last_failure = ''
        self._status_key = self._status = None
        self.reactor = router.reactor
        self.name = name
        self.socket_path = socket_path
        self.request_timeout = request_timeout
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.link = PeerLink(self.reactor, socket_path, self,
                             first_delay, max_delay)
        # Session state, reset on every connection
        self.session_up = False
        self.state = 'disconnected'
        self.state_message = ''
        self.responsive = True
        self.ready = False
        self.app = ''
        self.rtt = None
        self.changed_at = self.reactor.monotonic()
        self._ping_sent = None
        self._ping_timer = self.reactor.register_timer(self._ping_event)
        self.subs = SubscriptionSet()
        self._sub_seq = 0

    # Lifecycle, called by the router
    def start(self):
        self.link.start()

    def stop(self):
        self.link.stop()
        if self._ping_timer is not None:
            timer, self._ping_timer = self._ping_timer, None
            try:
                self.reactor.unregister_timer(timer)
            except Exception:
                pass

    # Link listener
    def link_up(self):
        self.session_up = False
        self.serving = False
        self.responsive = True
        self._ping_sent = None
        client_info = {'program': 'klipper-router', 'version': CLIENT_VERSION,
                       'name': self.router.name}
        self._request('info', {'client_info': client_info}, self._on_info,
                      HANDSHAKE_TIMEOUT, priority=True)

    def link_down(self, reason):
        self.session_up = False
        self.serving = False
        self._ping_sent = None
        self.rtt = None
        self._set_state('disconnected', reason)

    def link_push(self, msg):
        if msg.get('router') == 'call':
            self.router.bridge.handle_push(self, msg)
        elif msg.get('router') == 'status':
            params = msg.get('params')
            if not isinstance(params, dict):
                raise ProtocolError("status update without params")
            status = params.get('status')
            self._on_status(status)
            self._deliver(self.subs.apply_delta(status))
        else:
            logging.debug("router: %s: unexpected message %.200r",
                          self.name, msg)

    # Handshake: info, then one subscription that carries the Klipper state
    def _on_info(self, result, error):
        if error is not None:
            self.link.close("handshake failed: %s" % (error,))
            return
        if not isinstance(result, dict):
            raise ProtocolError("info reply is not an object")
        app = result.get('app')
        self.app = app if isinstance(app, str) else 'Klipper'
        self._set_state(result.get('state'), result.get('state_message'))
        self._request('router/info', {'name': self.router.name},
                      self._on_router_info, HANDSHAKE_TIMEOUT, priority=True)

    def _on_router_info(self, result, error):
        # A peer without the module answers "No registered callback"
        self.has_module = error is None and isinstance(result, dict)
        self.remote_allow = None
        self.remote_known = True
        if self.has_module and isinstance(result.get('allow'), list):
            self.remote_allow = frozenset(a for a in result['allow']
                                          if isinstance(a, str))
            self.remote_known = result.get('known') is not False
        if len(self.subs) and not self.permits('subscribe'):
            self.router.runner.report(self.refusal('subscribe')
                                      + ": its objects are not followed",
                                      self.name)
        if self.has_module and not self.is_self:
            name = result.get('name')
            if name != self.name:
                logging.warning("router: the peer at %s calls itself %.40r,"
                                " not '%s'", self.socket_path, name,
                                self.name)
        if self.is_self or (not self.has_module
                            and self.serve_remote_methods):
            self.router.bridge.register_remote_methods(self)
        if self.is_self and not len(self.subs):
            # The own link only carries remote-method calls: a subscription
            # would keep Klipper's 4 Hz status poll running for nothing.
            self.session_up = True
            self.link.note_healthy()
            self._update_ready()
            return
        if self.has_module or self.is_self:
            self._subscribe_all()
            return
        # Lifecycle macros run on a peer without the module only if it
        # defines them (an unknown command would print on its console).
        self._request('objects/list', {}, self._on_objects_list,
                      HANDSHAKE_TIMEOUT, priority=True)

    def _on_objects_list(self, result, error):
        names = result.get('objects') if isinstance(result, dict) else None
        if isinstance(names, list):
            self.remote_macros = frozenset(
                n.split(None, 1)[1].upper() for n in names
                if isinstance(n, str) and n.startswith('gcode_macro ')
                and len(n.split(None, 1)) == 2)
        self._subscribe_all()

    def _subscribe_all(self):
        # One subscription per connection carries the peer's state and
        # every local subscription: ready, the mirror and the first (full)
        # callbacks all come from its reply.
        self.subs.mark_all_fresh()
        self._send_subscription()

    def _on_status(self, status):
        if not isinstance(status, dict):
            raise ProtocolError("status is not an object")
        webhooks = status.get('webhooks')
        if webhooks is None:
            return
        if not isinstance(webhooks, dict):
            raise ProtocolError("webhooks status is not an object")
        self._set_state(webhooks.get('state', self.state),
                        webhooks.get('state_message', self.state_message))

    def _set_state(self, state, message):
        if state != 'disconnected' and state not in KLIPPER_STATES:
            raise ProtocolError("unknown Klipper state %.40r" % (state,))
        if not isinstance(message, str):
            message = ''
        changed = (state != self.state or message != self.state_message)
        self.state = state
        self.state_message = message.strip()
        if changed:
            self.changed_at = self.reactor.monotonic()
        self._update_ready()

    def _update_ready(self):
        ready = (self.session_up and self.responsive
                 and self.state == 'ready')
        if ready == self.ready:
            return
        self.ready = ready
        self.changed_at = self.reactor.monotonic()
        logging.info("router: peer %s: %s", self.name, self.describe())
        self.router.peer_ready_changed(self, ready, self._reason())

    def _reason(self):
        if not self.link.connected:
            return 'disconnected'
        if not self.responsive:
            return 'unresponsive'
        return self.state

    # Subscriptions to the peer's objects, merged into one per connection
    def subscribe(self, sub):
        self.subs.add(sub)
        if self.session_up:
            self._send_subscription()

    def unsubscribe(self, key):
        if self.subs.remove(key) and self.session_up:
            self._send_subscription()

    def _send_subscription(self):
        objects = self.subs.merged() if self.permits('subscribe') else {}
        hooks = objects.get('webhooks', [])
        if hooks is not None:
            objects['webhooks'] = sorted(set(hooks) | {'state',
                                                       'state_message'})
        self._sub_seq += 1
        seq = self._sub_seq
        def on_reply(result, error):
            if seq != self._sub_seq:
                return   # a newer request carries the current set
            if error is not None:
                if not error.startswith("connection lost"):
                    self.link.close("subscription failed: %s" % (error,))
                return
            if not isinstance(result, dict) or not isinstance(
                    result.get('status'), dict):
                raise ProtocolError("subscribe reply without status")
            status = result['status']
            changes = self.subs.apply_snapshot(status)
            if not self.session_up:
                self.session_up = True
                self.link.note_healthy()
                if self._ping_timer is not None:
                    self.reactor.update_timer(
                        self._ping_timer,
                        self.reactor.monotonic() + PING_INTERVAL)
            self._on_status(status)
            self._update_ready()
            self._deliver(changes)
        try:
            self._request('objects/subscribe', {
                'objects': objects, 'response_template': STATUS_TEMPLATE},
                on_reply, HANDSHAKE_TIMEOUT, priority=True)
        except PeerError as e:
            logging.info("router: %s: subscription not sent: %s",
                         self.name, e)

    def _deliver(self, changes):
        if not changes:
            return
        for sub, values in changes:
            if not sub.callback:
                continue
            what = ("callback %s of the subscription to '%s'"
                    % (sub.callback, self.name))
            params = callback_params(self.name, values)
            if sub.runs_on is None:
                self.router.runner.call_macro(sub.callback, params, what)
            else:
                # For a peer without the module: a G-code line it parses
                self.router.run_line_on(sub.runs_on,
                                        command_line(sub.callback, params),
                                        what)

    # Keepalive: round-trip time, and a hung peer is no longer "ready"
    def _ping_event(self, eventtime):
        if not self.session_up or self.is_self:
            return self.reactor.NEVER
        if self._ping_sent is None:
            sent = eventtime
            def on_reply(result, error):
                if self._ping_sent != sent:
                    return
                self._ping_sent = None
                if error is None:
                    self.rtt = self.reactor.monotonic() - sent
                    self._set_responsive(True)
                elif error == "timed out":
                    self._set_responsive(False)
            try:
                self._request('info', {}, on_reply, PING_TIMEOUT,
                              priority=True)
                self._ping_sent = sent
            except PeerError as e:
                logging.info("router: %s: keepalive not sent: %s",
                             self.name, e)
        return eventtime + PING_INTERVAL

    def _set_responsive(self, responsive):
        if responsive != self.responsive:
            self.responsive = responsive
            logging.info("router: peer %s %s", self.name,
                         "answers again" if responsive
                         else "stopped answering")
            self._update_ready()

    # Requests
    def _request(self, method, params, callback, timeout, priority=False):
        try:
            return self.link.request(method, params, callback, timeout,
                                     priority)
        except LinkError as e:
            raise PeerError(str(e))

    def check_ready(self, script=None):
        """Raises PeerError saying why G-code cannot go to the peer now.
        A connected peer that is not ready still takes a restart."""
        if not self.link.connected:
            raise PeerError("not connected (%s)"
                            % (self.link.last_error or "connecting",))
        if not self.session_up:
            raise PeerError("connecting")
        if not self.responsive:
            raise PeerError("not responding (no answer for %.0f s)"
                            % (PING_TIMEOUT,))
        if self.state != 'ready' and not (
                script is not None and script.split()[:1] and
                script.split()[0].upper() in NOT_READY_COMMANDS):
            msg = self.state_message.split('\n')[0]
            raise PeerError("Klipper state is '%s'%s" % (
                self.state, (": " + msg) if msg else ""))

    def request(self, method, params, callback, timeout=None):
        """callback(result, error) runs once, from a reactor callback."""
        if timeout is None:
            timeout = self.request_timeout
        return self._request(method, params, callback, timeout)

    def permits(self, action):
        """Does the peer let this instance do that (its allow option)?"""
        return self.remote_allow is None or action in self.remote_allow

    def refusal(self, action):
        if not self.remote_known:
            return ("'%s' does not know instance '%s': add [router %s] to"
                    " %s's config" % (self.name, self.router.name,
                                      self.router.name, self.name))
        return ("'%s' does not accept %s from '%s' (see allow: in its"
                " [router %s])" % (self.name, action, self.router.name,
                                   self.router.name))

    def run_script(self, script, callback, timeout=None):
        self.check_ready(script)
        if not self.permits('gcode'):
            raise PeerError(self.refusal('gcode'))
        # A peer with the module checks its allow option on router/gcode
        method = 'router/gcode' if self.has_module else 'gcode/script'
        return self.request(method, {'script': script}, callback, timeout)

    def run_line(self, line, what):
        """Fire and forget, errors reported here."""
        def on_reply(result, error):
            if error is not None:
                self.router.runner.report("%s on '%s' failed: %s"
                                          % (what, self.name, error),
                                          self.name)
        try:
            self.run_script(line, on_reply)
        except PeerError as e:
            logging.info("router: %s not run on '%s': %s", what, self.name,
                         e)

    # Status
    def describe(self):
        if self.ready:
            return "ready"
        if not self.link.connected:
            return "disconnected: %s" % (self.link.last_error or "connecting")
        if not self.session_up:
            return "connecting"
        if not self.responsive:
            return "not responding"
        return "connected, Klipper %s" % (self.state,)

    def note_failure(self, text):
        self.last_failure = text

    def get_status(self):
        # Cached against every value it shows: a change of any of them
        # builds a new dict (Klipper's subscribers compare them).
        key = (self.session_up, self.ready, self.state, self.state_message,
               self.responsive, self.link.last_error, self.has_module,
               self.last_failure, self.subs.version)
        if key != self._status_key:
            self._status_key = key
            self._status = {
                'connected': self.session_up, 'ready': self.ready,
                'state': self.state, 'state_message': self.state_message,
                'responsive': self.responsive,
                'last_error': self.link.last_error,
                'last_failure': self.last_failure,
                'module': self.has_module,
                'objects': self.subs.mirror_copy()}
        return self._status
