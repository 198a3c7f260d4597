# A peer instance on klippy's reactor: its link, its keepalive timer, and
# what its session asks for (session.py holds the protocol, without I/O)
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections, logging, os
from ..common.gcode_text import command_line
from ..common.timers import drop_timer, next_due
from ..link.link import Link
from ..link.sansio import rpc
from ..link.sansio.backoff import Backoff
from ..link.transport import UnixTransport
from ..link.ws_transport import WebSocketTransport
from .sansio import identity, session
from .sansio.output import Watches
from .sansio.subscriptions import callback_params

# What a peer that is connected but not ready still takes as G-code
NOT_READY_COMMANDS = ('FIRMWARE_RESTART', 'RESTART', 'STATUS')

# The options of one peer, as its [router NAME] section gives them
# (remote: None for a local peer; module_required: only a discovered peer
# must run the module, one that answers without it is dropped, router.py)
PeerOptions = collections.namedtuple(
    'PeerOptions', 'name socket request_timeout reconnect_delay'
    ' reconnect_max_delay on_connect on_disconnect serve allow remote'
    ' module_required', defaults=(None, False))


def address_of(options):
    if options.remote is not None:
        return options.remote.url
    return os.path.realpath(os.path.expanduser(options.socket))


def _transport(reactor, options):
    if options.remote is not None:
        return WebSocketTransport(reactor, options.remote, None,
                                  options.reconnect_delay,
                                  options.reconnect_max_delay)
    return UnixTransport(reactor, options.socket, None,
                         options.reconnect_delay, options.reconnect_max_delay)


class PeerRefused(rpc.NotSent):
    """Not sent because the peer's allow: does not let this instance do
    that: a setting there, not a passing state."""


# What a peer asks of the rest of this instance: its name, the runner
# (reports, callback macros), and whom to tell when it changes. pushes
# maps the 'router' key of a pushed message to its handler(peer, msg), so
# a peer knows neither the old bridge's methods nor the mesh; serve_own
# takes this instance's own macros' calls (on its link to itself);
# link_reset(peer) is told that a connection began or ended (nothing is
# registered on it).
PeerHooks = collections.namedtuple(
    'PeerHooks', 'own_name runner ready_changed changed pushes'
    ' run_line_on left_alone serve_own link_reset')


def _own_link(reactor, options, listener, link):
    """The peer's link: a new one, or the one discovery opened."""
    if link is None:
        return Link(reactor, _transport(reactor, options), listener)
    link.listener = listener
    link.transport.backoff = Backoff(options.reconnect_delay,
                                     options.reconnect_max_delay)
    return link


class PeerLink:
    """A peer's link and session: the link's listener, and the session's
    actions carried out. Peer below is what the rest of the router uses."""
    def __init__(self, reactor, options, hooks, is_self=False, link=None):
        self.hooks = hooks
        self.runner = hooks.runner
        self.reactor = reactor
        self.options = options
        self.name = options.name
        self.is_self = is_self
        self.allow = options.allow          # what the peer may do here
        self.request_timeout = options.request_timeout
        self.session = session.PeerSession(
            options.name, hooks.own_name, reactor.monotonic, is_self,
            options.serve, options.module_required)
        self.subs = self.session.subs
        self.watches = Watches()            # scripts whose output is shown
        self.link = _own_link(reactor, options, self, link)
        # What identifies the instance across the mesh: its socket's real
        # path, or the URL of its Moonraker bridge
        self.address = address_of(options)
        self.known_by = 'configured'        # or 'shared file', 'discovered'
        self.removed = False                # dropped from the router
        # A Klipper without the module on this connection, which this
        # instance may serve if elected (mesh/election.py decides, and
        # knows whether it does)
        self.wants_serve = False
        self.kid = None                     # its Klipper's identity
        self.last_failure = ''
        self._status_key = self._status = None
        self._ping_timer = self.reactor.register_timer(self._ping_event)
        self._actions = {
            session.Send: self._send, session.Close: self._close,
            session.Healthy: self._healthy, session.Serve: self._serve,
            session.Deliver: self._deliver,
            session.ReadyChanged: self._ready_changed,
            session.Report: self._report,
            session.LeaveAlone: self._leave_alone}

    # What the session knows, for the router and the commands
    @property
    def ready(self):
        """Its Klipper is ready and answers: G-code can go there now."""
        return self.session.ready

    @property
    def has_module(self):
        """Its Klipper runs the router (learnt in the handshake)."""
        return self.session.has_module

    @property
    def may_be_candidate(self):
        """Might this peer serve a Klipper this instance serves? One with
        the module, or one not met yet, unless it is known not to run: no
        process listens at its socket, or (another host) it cannot be
        reached, which then cuts it from a Klipper here too."""
        if self.is_self or not (self.has_module or self.session.info is None):
            return False
        if self.link.connected:
            return True
        return not (self.link.transport.nothing_listens
                    or self.options.remote is not None)

    def relearn_soon(self):
        """A peer that did not list this instance may now: its next
        keepalive (which asks router/info again) goes now, not in up to
        PING_INTERVAL."""
        if (self.session.phase is session.Phase.UNLISTED
                and self._ping_timer is not None):
            self.reactor.update_timer(self._ping_timer, self.reactor.NOW)

    def permits(self, action):
        """Does the peer let this instance do that (its allow option)?"""
        return self.session.permits(action)

    def refusal(self, action):
        return self.session.refusal(action)

    def describe(self):
        return self.session.describe(self.link.last_error)

    def why_not_ready(self):
        """Why G-code cannot go there now, with its Klipper's message."""
        return self.session.unavailable(self.link.last_error) or (
            self.describe())

    # Lifecycle, called by the router
    def start(self):
        if self.link.connected:
            self.link_up()     # taken over from discovery, already open
            return
        self.link.start()
        folder = os.path.dirname(self.address)
        if self.options.remote is None and not os.path.isdir(folder):
            # Not an error: the folder may come with the peer's first start
            self.runner.report(
                "the folder %s of the socket of peer '%s' does not exist"
                " (yet): check socket: in [router %s]; it is dialed until"
                " the socket appears" % (folder, self.name, self.name))

    def stop(self):
        self.link.stop()
        self._ping_timer = drop_timer(self.reactor, self._ping_timer)

    # Link listener
    def link_up(self):
        self.wants_serve = False
        self.hooks.link_reset(self)
        self.watches.connection_changed()
        self._run(self.session.connected())

    def link_down(self, reason):
        was_serving, self.wants_serve = self.wants_serve, False
        self.hooks.link_reset(self)
        self._run(self.session.closed(reason))
        if was_serving:
            self.hooks.changed()

    def link_push(self, msg):
        kind = msg.get('router')
        # What a peer pushes is anything: a kind that is no string has no
        # handler (and must not reach a dict lookup: a list is unhashable)
        handler = self.hooks.pushes.get(kind) if isinstance(kind,
                                                            str) else None
        if handler is None:
            self._run(self.session.push(msg))
        elif kind == 'call' and self.options.module_required:
            # Its router calls this one's endpoints: a remote-method call
            # is only ever taken from a Klipper served here
            logging.info("router: ignored remote call from '%s', an"
                         " instance with the module", self.name)
        else:
            handler(self, msg)

    def _ping_event(self, eventtime):
        actions, interval = self.session.tick()
        self._run(actions)
        return self.reactor.NEVER if interval is None else (
            next_due(eventtime, interval))

    # Carrying out the session's actions
    def _run(self, actions):
        for action in actions:
            self._actions[type(action)](action)

    def _send(self, send):
        def on_reply(result, error):
            self._run(send.on_reply(result, error))
        try:
            self.link.request(send.method, send.params, on_reply,
                              send.timeout, send.priority, send.inline)
        except rpc.NotSent as e:
            logging.info("router: %s: %s not sent: %s", self.name,
                         send.method, e)
            self._run(send.on_reply(None, rpc.Error(str(e), rpc.LOCAL)))

    def _close(self, close):
        self.link.close(close.reason)

    def _healthy(self, _healthy):
        self.link.note_healthy()
        if self._ping_timer is not None and not self.is_self:
            self.reactor.update_timer(self._ping_timer, next_due(
                self.reactor.monotonic(), session.PING_INTERVAL))

    def _serve(self, serve):
        if self.is_self:
            self.hooks.serve_own(self)
        elif self.options.module_required:
            pass    # never served (the session does not ask it either)
        else:
            # A Klipper without the module: served by one instance of the
            # mesh (election.py), known by what it says of itself
            self.kid = identity.klipper_id(self.session.info, self.address)
            logging.info("router: %s is Klipper %s (%s)", self.name,
                         self.kid, identity.describe_info(self.session.info,
                                                       self.address))
            self.wants_serve = True
            self.hooks.changed()

    def stop_serving(self, why, still_wanted):
        """Closes the link once the Klipper has answered one more request:
        every call it pushed before that answer is read (and dropped) here
        first, so none is lost unreported in the socket. still_wanted()
        says, then, whether the close is still wanted."""
        logging.info("router: %s: no longer served here: %s", self.name, why)
        link = self.link
        def on_reply(result, error):
            if still_wanted() and link.connected:
                link.close("handing over: %s" % (why,))
        try:
            link.request('info', {}, on_reply, session.PING_TIMEOUT)
        except rpc.NotSent:
            link.close("handing over: %s" % (why,))

    def _deliver(self, deliver):
        for sub, values in deliver.changes:
            if not sub.callback:
                continue
            what = ("callback %s of the subscription to '%s'"
                    % (sub.callback, self.name))
            params = callback_params(self.name, values)
            if sub.runs_on is None:
                self.runner.call_macro(sub.callback, params, what)
            else:
                # For a peer without the module: a G-code line it parses
                self.hooks.run_line_on(sub.runs_on,
                                       command_line(sub.callback, params),
                                       what)

    def _ready_changed(self, change):
        # The link to this instance's own socket carries its macros' calls
        logging.info("router: %s: %s", "own link (this instance's socket)"
                     if self.is_self else "peer %s" % (self.name,),
                     self.describe())
        self.hooks.ready_changed(self, change.ready, change.reason)

    def _leave_alone(self, leave):
        # The router drops this peer; its link is closed now
        self.link.close(leave.reason)
        self.hooks.left_alone(self, leave.reason)

    def _report(self, report):
        self.runner.report(report.text, self.name)


class Peer(PeerLink):
    """One peer instance: its subscriptions, requests and status."""
    # Subscriptions to the peer's objects, merged into one per connection
    def subscribe(self, sub):
        """Raises ValueError (see SubscriptionSet.add)."""
        self.subs.add(sub)
        self._run(self.session.subscriptions_changed())

    def unsubscribe(self, key):
        if self.subs.remove(key):
            self._run(self.session.subscriptions_changed())

    # Requests
    def request(self, method, params, callback, timeout=None, inline=False):
        """callback(result, error) runs once, from a reactor callback."""
        if timeout is None:
            timeout = self.request_timeout
        return self.link.request(method, params, callback, timeout,
                                 inline=inline)

    def check_ready(self, script=None):
        """Raises rpc.NotSent saying why G-code cannot go to the peer now."""
        if self.session.phase is session.Phase.READY:
            return
        words = (script or '').split()[:1]
        why = self.session.unavailable(
            self.link.last_error,
            restart=bool(words) and words[0].upper() in NOT_READY_COMMANDS)
        if why is not None:
            raise rpc.NotSent(why)

    def run_script(self, script, callback, timeout=None, inline=False,
                   watch=False, show=None):
        """watch: a command the peer's Klipper does not know fails the
        script (Klipper itself only prints 'Unknown command'); show(line),
        if given, gets each line the script prints there as it arrives
        (cleaned and bounded: sansio/output.py)."""
        self.check_ready(script)
        if not self.session.permits('gcode'):
            raise PeerRefused(self.refusal('gcode'))
        # A peer with the module checks its allow option on router/gcode
        method = 'router/gcode' if self.session.has_module else 'gcode/script'
        tagged = self.session.script_output
        if watch and (show is not None or not tagged):
            return self._run_watched(method, script, callback, timeout,
                                     inline, show)
        # (router/gcode of 0.4 and later fails an unknown command itself)
        return self.request(method, {'script': script}, callback, timeout,
                            inline)

    def _run_watched(self, method, script, callback, timeout, inline, show):
        tagged = self.session.script_output
        if not tagged:
            self._subscribe_output()
        call, watch = self.watches.open(show, tagged)
        params = {'script': script}
        if tagged:
            params['output'] = call   # its lines come back with this tag
        def on_reply(result, error):
            self.watches.close(call)
            if error is None and watch.unknown is not None:
                error = rpc.Error(watch.unknown)
            callback(result, error)
        try:
            return self.request(method, params, on_reply, timeout, inline)
        except rpc.NotSent:
            self.watches.close(call)
            raise

    def _subscribe_output(self):
        """A Klipper without the module (or with an older one) pushes its
        whole console once asked, to the end of the connection (Klipper
        has no unsubscribe): asked at the first watched script, so a peer
        never sent one costs nothing."""
        if self.watches.subscribed:
            return
        def on_reply(result, error):
            if error is not None and error.kind != rpc.LOST:
                logging.info("router: %s: gcode/subscribe_output failed:"
                             " %s", self.name, error)
                self.watches.subscribed = False
        self.request('gcode/subscribe_output',
                     {'response_template': {'router': 'output'}}, on_reply)
        self.watches.subscribed = True

    def take_output(self, msg):
        """An output push (PeerHooks.pushes['output']): its lines go to
        the script waiting for them, if any."""
        watch, lines = self.watches.take(msg.get('params'))
        for line in lines:
            watch.show(line)

    def run_line(self, line, what):
        """Fire and forget, errors reported here."""
        try:
            self.run_script(line, self.runner.reporter(
                "%s on '%s'" % (what, self.name), self.name))
        except rpc.NotSent as e:
            logging.info("router: %s not run on '%s': %s", what, self.name,
                         e)

    # Status
    def note_failure(self, text):
        self.last_failure = text

    def get_status(self):
        # Cached against every value it shows: a change of any of them
        # builds a new dict (Klipper's subscribers compare them).
        s = self.session
        key = (s.session_up, s.ready, s.state, s.state_message,
               s.responsive, self.link.last_error, s.has_module,
               self.last_failure, s.missing, self.subs.version)
        if key != self._status_key:
            self._status_key = key
            self._status = {
                'connected': s.session_up, 'ready': s.ready,
                'state': s.state, 'state_message': s.shown_message(),
                'responsive': s.responsive,
                'last_error': self.link.last_error,
                'last_failure': self.last_failure,
                'missing': s.missing,
                'module': s.has_module,
                'objects': self.subs.mirror_copy()}
        return self._status
