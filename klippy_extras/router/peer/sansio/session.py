# The conversation with one peer over one connection, without I/O
#
# Inputs: connected, a reply to a request it asked for, a pushed message,
# a keepalive tick, closed. Outputs: a list of actions for the glue (peer.py)
# to carry out: send a request, close, the link is healthy, serve the old
# bridge's remote methods, deliver callback changes, readiness changed.
# Everything the peer shows (printer.router, ROUTER_PRINTERS_LIST, errors)
# is formatted from one phase.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections, enum, json
from ...link.sansio import rpc
from ...common import gcode_text
from ...link.sansio.framing import ProtocolError
from . import subscriptions
from .subscriptions import SubscriptionSet

PING_INTERVAL = 2.       # seconds between keepalive requests
PING_TIMEOUT = 5.        # unanswered this long: the peer is unresponsive
HANDSHAKE_TIMEOUT = 10.
KLIPPER_STATES = ('startup', 'ready', 'error', 'shutdown')
STATUS_TEMPLATE = {'router': 'status'}
CLIENT_VERSION = "0.4.0"

class Phase(enum.Enum):
    """The phases of one connection, in the order it goes through them;
    each one's value is how it reads (describe, unavailable and the
    printers list build on it)."""
    DISCONNECTED = 'disconnected'
    CONNECTING = 'connecting'          # link up, handshake under way
    UNRESPONSIVE = 'not responding'    # no keepalive answer for PING_TIMEOUT
    NOT_READY = 'connected'            # its Klipper is not ready
    UNLISTED = 'not listed there'      # its router does not list this one
    READY = 'ready'


# The Klipper state shown while there is no connection
STATE_DISCONNECTED = 'disconnected'

# Actions
# inline: the reply may be taken in the fd callback (Link.take_now)
Send = collections.namedtuple('Send', 'method params on_reply timeout'
                              ' priority inline', defaults=(False,))
Close = collections.namedtuple('Close', 'reason')
Healthy = collections.namedtuple('Healthy', '')
Serve = collections.namedtuple('Serve', '')
Deliver = collections.namedtuple('Deliver', 'changes')
ReadyChanged = collections.namedtuple('ReadyChanged', 'ready reason')
Report = collections.namedtuple('Report', 'text')
# A peer that must run the module (a discovered one) answered without it
LeaveAlone = collections.namedtuple('LeaveAlone', 'reason')
NO_MODULE = "it answered as a Klipper without the module"
NO_ROUTER_INFO = "router/info is not among its endpoints"


class Readiness:
    """The peer's Klipper state and readiness, from the phase of its
    connection (part of PeerSession, below)."""
    @property
    def phase(self):
        if not self.link_up:
            return Phase.DISCONNECTED
        if not self.session_up:
            return Phase.CONNECTING
        if not self.responsive:
            return Phase.UNRESPONSIVE
        if self.state != 'ready':
            return Phase.NOT_READY
        if self.has_module and not self.remote_known:
            # It refuses all G-code from this instance: not ready, with
            # a state of its own that says what to change
            return Phase.UNLISTED
        return Phase.READY

    def _on_status(self, status):
        if not isinstance(status, dict):
            raise ProtocolError("status is not an object")
        webhooks = status.get('webhooks')
        if webhooks is None:
            return []
        if not isinstance(webhooks, dict):
            raise ProtocolError("webhooks status is not an object")
        return self._set_state(
            webhooks.get('state', self.state),
            webhooks.get('state_message', self.state_message))

    def _set_state(self, state, message):
        if state != STATE_DISCONNECTED and state not in KLIPPER_STATES:
            raise ProtocolError("unknown Klipper state %.40r" % (state,))
        message = plain_message(message)
        if (state, message) != (self.state, self.state_message):
            self.state, self.state_message = state, message
            self.changed_at = self.clock()
        return self._update_ready()

    def _set_responsive(self, responsive):
        if responsive == self.responsive:
            return []
        self.responsive = responsive
        return self._update_ready()

    def _update_ready(self):
        phase = self.phase
        ready = phase is Phase.READY
        if ready == self.ready:
            return []
        self.ready = ready
        self.changed_at = self.clock()
        reason = 'unresponsive' if phase is Phase.UNRESPONSIVE else (
            STATE_DISCONNECTED if phase in (Phase.DISCONNECTED,
                                            Phase.CONNECTING)
            else 'not listed' if phase is Phase.UNLISTED else self.state)
        return [ReadyChanged(ready, reason)]

    def permits(self, action):
        """What this instance may do there (the peer's allow: for it)."""
        return self.remote_allow is None or action in self.remote_allow

    # Descriptions, all from the phase
    def describe(self, last_error):
        """The phase in words, for the log and lists."""
        phase = self.phase
        if phase is Phase.DISCONNECTED:
            return "%s: %s" % (phase.value, last_error or "connecting")
        if phase is Phase.NOT_READY:
            return "%s, Klipper %s" % (phase.value, self.state)
        if phase is Phase.UNLISTED:
            return "%s (%s)" % (phase.value, self.unlisted())
        return phase.value

    def shown_message(self):
        """The state message printer.router shows: why it is not ready."""
        if self.phase is Phase.UNLISTED:
            return self.unlisted()
        return self.state_message

    def unlisted(self):
        return ("'%s' does not know instance '%s': add [router %s] to %s's"
                " config" % (self.name, self.own_name, self.own_name,
                             self.name))

    def unavailable(self, last_error, restart=False):
        """Why G-code cannot go to the peer now, or None. A connected peer
        that is not ready still takes a restart."""
        phase = self.phase
        if phase is Phase.READY or (phase is Phase.NOT_READY and restart):
            return None
        if phase is Phase.NOT_READY:
            msg = self.state_message.split('\n')[0]
            return "Klipper state is '%s'%s" % (self.state,
                                                (": " + msg) if msg else "")
        if phase is Phase.DISCONNECTED:
            return "not connected (%s)" % (last_error or "connecting",)
        if phase is Phase.UNRESPONSIVE:
            return "%s (no answer for %.0f s)" % (phase.value, PING_TIMEOUT)
        if phase is Phase.UNLISTED:
            return self.unlisted()
        return phase.value

    def refusal(self, action):
        """Why the peer does not let this instance do that: a setting of
        the peer, which holds until it changes there."""
        if not self.remote_known and self.state in ('error', 'shutdown'):
            # Halted by its own config, maybe: the sections after the
            # error were never read, this instance's among them
            msg = self.state_message.split('\n')[0].strip()
            return ("'%s' is halted (Klipper state '%s'%s): it takes no %s"
                    " from '%s' in that state; once fixed and restarted it"
                    " must list [router %s]" % (
                        self.name, self.state, ": " + msg if msg else "",
                        action, self.own_name, self.own_name))
        if not self.remote_known:
            return self.unlisted()
        where = self.remote_where or "[router %s]" % (self.own_name,)
        if not where.endswith(':'):
            where += " allow:"
        return ("'%s' does not accept %s from '%s': its %s does not"
                " include %s" % (self.name, action, self.own_name, where,
                                 action))


class ObjectCheck:
    """Has the peer every object and field followed there? Asked once its
    Klipper is ready, after each subscription reply; what it lacks is
    shown (missing) and reported once per connection, so a misspelt
    name in subscribe: is never silent (part of PeerSession, below)."""
    def _check_objects(self):
        if not (self._check_due and self.ready):
            return []
        self._check_due = False
        self._check_seq += 1
        seq = self._check_seq
        objects = self.subs.merged() if self.permits('subscribe') else {}
        maybe_gone, fields = subscriptions.suspects(objects,
                                                    self.subs.mirror)
        if not maybe_gone and not fields:
            return self._set_missing([])
        def on_list(result, error):
            names = result.get('objects') if isinstance(result,
                                                        dict) else None
            if seq != self._check_seq or not isinstance(names, list):
                return []
            listed = frozenset(n for n in names if isinstance(n, str))
            ask = {n: None for n in fields if n in listed}
            if not ask:
                return self._set_missing(subscriptions.find_missing(
                    objects, listed, {}))
            def on_query(result, error):
                status = result.get('status') if isinstance(
                    result, dict) else None
                if seq != self._check_seq or not isinstance(status, dict):
                    return []
                return self._set_missing(subscriptions.find_missing(
                    objects, listed, status))
            return [Send('objects/query', {'objects': ask}, on_query,
                         HANDSHAKE_TIMEOUT, True)]
        return [Send('objects/list', {}, on_list, HANDSHAKE_TIMEOUT, True)]

    def _set_missing(self, missing):
        self.missing = text = subscriptions.format_missing(missing)
        if not text or text == self._reported_missing:
            return []
        self._reported_missing = text
        by = subscriptions.followers(self.subs.subs.values(), missing,
                                     self.name)
        return [Report("'%s' has no %s: no value comes for %s (followed"
                       " by %s)" % (self.name, text, 'them' if len(
                           missing) > 1 else 'it', ', '.join(by)))]


class PeerSession(Readiness, ObjectCheck):
    def __init__(self, name, own_name, clock, is_self=False, serve=True,
                 module_required=False):
        self.name = name
        self.own_name = own_name
        self.clock = clock
        self.is_self = is_self        # the link to this instance's socket
        self.serve = serve            # serve a peer without the module
        # A discovered peer: a module instance on every connection, or
        # no peer at all (never served as a Klipper without the module)
        self.module_required = module_required
        self.subs = SubscriptionSet()
        self.link_up = False
        self.state = STATE_DISCONNECTED   # the peer's Klipper state
        self.state_message = ''
        self.changed_at = clock()
        self.ready = False
        # Learnt in the handshake; kept while the link is down
        self.has_module = False
        self.remote_allow = None      # what it lets this instance do there
        self.remote_known = True      # does it list this instance?
        self.remote_where = None      # its option that says so
        self.missing = ''             # followed there, not found there
        self.remote_macros = frozenset()
        self.fast_follow = False      # it takes router/subscribe
        # Its router/gcode pushes what a script prints and fails on an
        # unknown command (0.4 and later)
        self.script_output = False
        self.app = ''
        self.info = None              # its info reply: who it says it is
        self._sub_seq = self._check_seq = 0
        self._reset()

    def _reset(self):
        # What one connection knows
        self.session_up = False
        self.responsive = True
        self.rtt = None
        self._ping_sent = None
        self._check_due = False       # a subscription reply to check
        self._reported_missing = ''

    # Inputs
    def connected(self):
        self._reset()
        self.link_up = True
        client_info = {'program': 'klipper-router', 'version': CLIENT_VERSION,
                       'name': self.own_name}
        return [Send('info', {'client_info': client_info}, self._on_info,
                     HANDSHAKE_TIMEOUT, True)]

    def closed(self, reason):
        self.link_up = False
        self._reset()
        return self._set_state(STATE_DISCONNECTED, reason)

    def push(self, msg):
        """A message without id that is not a remote-method call."""
        if msg.get('router') != 'status':
            return []
        params = msg.get('params')
        if not isinstance(params, dict):
            raise ProtocolError("status update without params")
        status = params.get('status')
        actions = self._on_status(status)
        return (actions + _deliver(self.subs.apply_delta(status))
                + self._check_objects())

    def tick(self):
        """The keepalive: returns the actions, and when to tick again."""
        if not self.session_up or self.is_self:
            return [], None
        if self._ping_sent is not None:
            return [], PING_INTERVAL
        self._ping_sent = sent = self.clock()
        # Not known there yet (discovery may add it): ask router/info
        relearn = self.has_module and not self.remote_known
        def on_reply(result, error):
            if self._ping_sent != sent:
                return []
            self._ping_sent = None
            if error is None:
                self.rtt = self.clock() - sent
                actions = self._set_responsive(True)
                if relearn:
                    self._learn_allow(result)
                    if self.remote_known:
                        # Ready now (the hooks run): its objects too
                        actions += self._update_ready()
                        actions += self.subscriptions_changed()
                return actions
            if error.kind == rpc.TIMEOUT:
                return self._set_responsive(False)
            return []
        method, params = (('router/info', {'name': self.own_name})
                          if relearn else ('info', {}))
        # A reply that changes nothing is taken in the fd callback
        return [Send(method, params, on_reply, PING_TIMEOUT, True,
                     inline=self.responsive and not relearn)
                ], PING_INTERVAL

    def subscriptions_changed(self):
        """A subscription was added or removed: resend the merged one."""
        return self._send_subscription() if self.session_up else []

    # Handshake: info, list_endpoints, router/info where there is one, then
    # one subscription that carries the Klipper state
    def _on_info(self, result, error):
        if error is not None:
            return [Close("handshake failed: %s" % (error,))]
        if not isinstance(result, dict):
            raise ProtocolError("info reply is not an object")
        app = result.get('app')
        self.app = app if isinstance(app, str) else 'Klipper'
        self.info = result
        actions = self._set_state(result.get('state'),
                                  result.get('state_message'))
        return actions + [Send('list_endpoints', {}, self._on_endpoints,
                               HANDSHAKE_TIMEOUT, True)]

    def _on_endpoints(self, result, error):
        # Never a method a Klipper does not have: Snapmaker's U1 fork hands
        # that error to its exception manager (its screen). Any other
        # answer asks router/info, as before list_endpoints.
        if error is not None and error.kind == rpc.LOST:
            return []   # gone with the connection
        endpoints = result.get('endpoints') if isinstance(result,
                                                          dict) else None
        if isinstance(endpoints, list) and 'router/info' not in endpoints:
            return self._on_router_info(None, rpc.Error(NO_ROUTER_INFO))
        return [Send('router/info', {'name': self.own_name},
                     self._on_router_info, HANDSHAKE_TIMEOUT, True)]

    def _on_router_info(self, result, error):
        # A peer without the module answers "No registered callback"
        has_module = error is None and isinstance(result, dict)
        if self.module_required and not has_module:
            return self._without_module(error)
        self.has_module = has_module
        self.remote_allow, self.remote_known = None, True
        self.remote_where = None
        version = _version(result.get('version')) if has_module else ()
        self.fast_follow = version >= (0, 3)
        self.script_output = version >= (0, 4)
        actions = []
        if self.has_module:
            self._learn_allow(result)
        if self.has_module and not self.is_self and (
                result.get('name') != self.name):
            actions.append(Report(
                "the instance dialed as '%s' calls itself %.40r: it will"
                " know this instance by that name" % (
                    self.name, result.get('name'))))
        if len(self.subs) and not self.permits('subscribe'):
            actions.append(Report(self.refusal('subscribe')
                                  + ": its objects are not followed"))
        if self.is_self or (not self.has_module and self.serve):
            actions.append(Serve())
        if self.is_self and not len(self.subs):
            # The own link only carries remote-method calls: a subscription
            # would keep Klipper's 4 Hz status poll running for nothing.
            return actions + self._session_up()
        if self.has_module or self.is_self:
            return actions + self._subscribe_all()
        # Lifecycle macros run on a peer without the module only if it
        # defines them (an unknown command would print on its console).
        return actions + [Send('objects/list', {}, self._on_objects_list,
                               HANDSHAKE_TIMEOUT, True)]

    def _without_module(self, error):
        """router/info of a peer that must run the module failed: no
        Serve, no subscription, nothing more on this connection."""
        self.has_module = False
        if error is not None and error.kind == rpc.LOST:
            return []   # no answer: the connection is gone already
        if error is not None and error.kind in (rpc.TIMEOUT, rpc.LOCAL):
            # No answer says nothing about the module: dial again later
            return [Close("handshake failed: router/info %s" % (error,))]
        return [LeaveAlone(NO_MODULE)]

    def _learn_allow(self, result):   # from router/info
        learnt = _allow_from(result)
        if learnt is not None:
            (self.remote_allow, self.remote_known,
             self.remote_where) = learnt

    def _on_objects_list(self, result, error):
        names = result.get('objects') if isinstance(result, dict) else None
        if isinstance(names, list):
            self.remote_macros = _macro_names(names)
        return self._subscribe_all()

    def _subscribe_all(self):
        # One subscription per connection carries the peer's state and
        # every local subscription: ready, the mirror and the first (full)
        # callbacks all come from its reply.
        self.subs.mark_all_fresh()
        return self._send_subscription()

    def _send_subscription(self):
        objects = self.subs.merged() if self.permits('subscribe') else {}
        hooks = objects.get('webhooks', [])
        if hooks is not None:
            objects['webhooks'] = sorted(set(hooks) | {'state',
                                                       'state_message'})
        self._sub_seq += 1
        seq = self._sub_seq
        # A peer with the module sends changes as they happen; Klipper's
        # own subscription samples them every 250 ms
        method = ('router/subscribe' if self.fast_follow and not self.is_self
                  else 'objects/subscribe')
        def on_reply(result, error):
            if seq != self._sub_seq:
                return []   # a newer request carries the current set
            return self._on_subscribed(result, error)
        return [Send(method, {
            'objects': objects, 'response_template': STATUS_TEMPLATE},
            on_reply, HANDSHAKE_TIMEOUT, True)]

    def _on_subscribed(self, result, error):
        if error is not None:
            if error.kind in (rpc.LOST, rpc.LOCAL):
                return []   # gone with the connection, or never sent
            return [Close("subscription failed: %s" % (error,))]
        if not isinstance(result, dict) or not isinstance(
                result.get('status'), dict):
            raise ProtocolError("subscribe reply without status")
        status = result['status']
        changes = self.subs.apply_snapshot(status)
        actions = [] if self.session_up else self._session_up()
        actions += self._on_status(status)
        self._check_due = True
        return actions + _deliver(changes) + self._check_objects()

    def _session_up(self):
        self.session_up = True
        return [Healthy()] + self._update_ready()








def plain_message(message):
    """A Klipper state message as text. Snapmaker's U1 fork writes its
    error and shutdown states with a JSON object as the first line
    ({"coded": "0003-0522-0000-0019", "oneshot": 0, "msg": "Shutdown due
    to M112 command"}): its "msg" is what the state says (and that fork
    would show only the "msg" of an error quoting the whole object)."""
    if not isinstance(message, str):
        return ''
    message = message.strip()
    first, _, rest = message.partition('\n')
    if not first.startswith('{'):
        return message
    try:
        coded = json.loads(first)
    except ValueError:
        return message
    if not isinstance(coded, dict) or not isinstance(coded.get('msg'), str):
        return message
    return (coded['msg'].strip() + '\n' + rest).strip()


def _deliver(changes):
    return [Deliver(changes)] if changes else []


def _allow_from(result):
    """What a peer's router/info says this instance may do there, whether
    it knows this instance, and which of its options says so ('[router
    main]', '[router] allow_unlisted:'); None when it does not say."""
    if isinstance(result, dict) and isinstance(result.get('allow'), list):
        where = result.get('where')
        return (frozenset(a for a in result['allow'] if isinstance(a, str)),
                result.get('known') is not False,
                gcode_text.clean_text(where)[:80] if isinstance(
                    where, str) and where else None)
    return None


def _macro_names(objects):
    return frozenset(n.split(None, 1)[1].upper() for n in objects
                     if isinstance(n, str) and n.startswith('gcode_macro ')
                     and len(n.split(None, 1)) == 2)


def _version(text):
    """'0.3.0' -> (0, 3, 0); anything else -> ()."""
    try:
        return tuple(int(x) for x in str(text).split('.'))
    except ValueError:
        return ()
