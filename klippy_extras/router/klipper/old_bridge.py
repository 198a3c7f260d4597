# The old klipper-router bridge's router/* methods, for configs written for
# it: as webhooks endpoints (API clients), as remote methods this instance
# registers on its own API socket (its macros' action_call_remote_method),
# and as remote methods registered on peers that cannot load the module.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import json, logging
from ..common import endpoints, gcode_text
from ..link.link import wait_reply
from ..link.sansio import rpc
from ..mesh.sansio import events
from ..peer.sansio import subscriptions, trust

METHODS = ('router/gcode/script', 'router/event/subscribe',
           'router/event/trigger', 'router/printers/list',
           'router/objects/list', 'router/objects/query',
           'router/objects/subscribe')
PUSH_TEMPLATE = 'call'
SHOWN_DROPS = 10     # console lines for the calls dropped in one hand-over


class BridgeError(Exception):
    pass


def _str(params, key, default=None):
    value = params.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise BridgeError("'%s' must be a non-empty string" % (key,))
    return value


def register_remote_methods(peer, on_done):
    """Registers router/* on the peer's Klipper: its macros'
    action_call_remote_method calls then come to this link."""
    left = [len(METHODS)]
    def on_reply(result, error):
        if error is not None:
            logging.info("router: remote method not registered on %s:"
                         " %s", peer.name, error)
        left[0] -= 1
        if left[0] == 0:
            on_done()
    for method in METHODS:
        try:
            peer.request('register_remote_method', {
                'remote_method': method,
                'response_template': {'router': PUSH_TEMPLATE,
                                      'method': method}}, on_reply)
        except rpc.NotSent as e:
            logging.info("router: cannot register %s on %s: %s",
                         method, peer.name, e)
            return


def event_param(params):
    event = events.check_event(params.get('event'))
    if event is None:
        raise BridgeError("invalid event name %.40r" % (params.get('event'),))
    return event


def callback_param(params, who, required=False):
    """gcode_callback, checked before anything is sent: a macro that
    runs on a served caller, or here (G-code here)."""
    macro = params.get('gcode_callback')
    if macro is None and not required:
        return None
    if not isinstance(macro, str) or not gcode_text.MACRO_RE.match(
            macro.strip().upper()):
        raise BridgeError("gcode_callback %.40r is not a macro name"
                          % (macro,))
    who.require_callback_here()
    return macro.strip().upper()


def objects_param(params):
    """objects: a dict of name to fields or null, or the OBJECTS text."""
    objects = params.get('objects')
    if isinstance(objects, str):
        return subscriptions.parse_objects(objects)
    if not objects:
        raise BridgeError("'objects' must map object names to a list of"
                          " fields or null")
    return subscriptions.check_object_map(objects)


class BridgeEntries:
    """How calls come in (API requests, pushed remote-method calls) and
    whether they may run here; Bridge below holds the methods."""
    def __init__(self, printer, peers, runner, callers, request_timeout):
        self.printer = printer
        self.reactor = printer.get_reactor()
        self.peers = peers
        self.runner = runner
        self.callers = callers
        self.request_timeout = request_timeout
        # Set by connect(): the parts of the mesh and of this instance
        # that its methods use
        self.election = self.eventbus = None
        self.printers_list = self.on_own_registered = None
        self.handlers = {
            'router/gcode/script': self._gcode_script,
            'router/event/subscribe': self._event_subscribe,
            'router/event/trigger': self._event_trigger,
            'router/printers/list': self._printers_list,
            'router/objects/list': self._objects_list,
            'router/objects/query': self._objects_query,
            'router/objects/subscribe': self._objects_subscribe}
        for method in METHODS:
            endpoints.register(printer, method, self._handle_endpoint)

    def connect(self, election, eventbus, printers_list, on_own_registered):
        """election decides whether a served peer's call runs here (its
        lease); printers_list() is router/printers/list's answer;
        on_own_registered() once this instance's own methods are."""
        self.election = election
        self.eventbus = eventbus
        self.printers_list = printers_list
        self.on_own_registered = on_own_registered

    def serve(self, peer):
        """Takes the old bridge's calls of the peer's macros (or of this
        instance's own, on its own link)."""
        register_remote_methods(peer, self.on_own_registered
                                if peer.is_self else (lambda: None))

    # Entry points
    def _handle_endpoint(self, web_request):
        """An API request. An instance that named itself in router/info
        acts with what its [router NAME] allows here; other clients with
        this instance's authority (they have gcode/script anyway)."""
        params = web_request.params
        if not isinstance(params, dict):
            raise web_request.error("params must be an object")
        who = self.callers.caller_of(web_request)
        result, error = wait_reply(
            self.reactor, lambda callback: self.call(
                web_request.get_method(), params, who, callback),
            self.request_timeout)
        if error is not None:
            raise web_request.error(error)
        web_request.send(result)

    def handle_push(self, peer, msg):
        """A remote-method call pushed by a macro: on our own socket
        (this instance's macros), or on a served peer without the module
        (with what its [router NAME] allows). Pushes on any other link
        are not ours to take."""
        method = msg.get('method')
        params = msg.get('params')
        if not peer.is_self and not self.election.may_run(peer):
            if self.election.is_serving(peer):
                self._drop(peer, method, params)
            else:
                logging.info("router: ignored remote call from '%s', which"
                             " this instance does not serve", peer.name)
            return
        if method not in self.handlers or not isinstance(params, dict):
            logging.info("router: ignored remote call %.200r", msg)
            return
        if peer.is_self:
            who = trust.Caller.local(self.peers.own_name)
        else:
            who = trust.Caller.served(peer, self.peers.own_name)
        done = self.runner.reporter("%s from '%s'" % (method, who.name),
                                    None if peer.is_self else peer.name)
        # Runs from the link's inbox callback, which is sliced: a flood of
        # pushes costs the same per push, however long it is.
        self.call(method, params, who, done)

    def _drop(self, peer, method, params):
        """A call of a served Klipper while this instance does not hold
        the lease: another may run it, so it never runs here."""
        count, why = self.election.note_drop(peer)
        logging.info("router: dropped call %d from '%s': %.40r %.300r (%s)",
                     count, peer.name, method, params, why)
        if count <= SHOWN_DROPS:
            self.runner.report(
                "%s from '%s' dropped: this instance does not hold the"
                " lease to serve it now (%s)%s" % (
                    method, peer.name, why,
                    "; further drops only in klippy.log"
                    if count == SHOWN_DROPS else ""), peer.name)

    def call(self, method, params, who, done):
        """Runs one method for who (a trust.Caller); done(result, error)
        is called once."""
        try:
            self.handlers[method](params, who, done)
        except (BridgeError, trust.Refused, ValueError) as e:
            done(None, str(e))
        except self.printer.command_error as e:
            done(None, str(e))
        except Exception as e:
            logging.exception("router: %s", method)
            done(None, "internal error: %s" % (type(e).__name__,))



class Bridge(BridgeEntries):
    """The old bridge's router/* methods."""
    # Helpers
    def _peer(self, name, allow_self=True):
        """The Peer for a target name; this instance is its self link."""
        canon = gcode_text.check_name(name) if isinstance(name, str) else None
        if canon == self.peers.own_name and allow_self:
            peer = self.peers.self_peer
            if peer is None:
                raise BridgeError("this instance has no API socket")
            return peer
        peer = self.peers.get(canon or '')
        if peer is None:
            raise BridgeError("unknown target %.40r" % (name,))
        return peer

    def _run_callback(self, who, macro, params, what):
        """gcode_callback: a macro on the caller."""
        if who.peer is None:
            self.runner.call_macro(macro, params, what)
        else:
            who.peer.run_line(gcode_text.command_line(macro, params), what)

    def _request(self, peer, method, params, done, on_result):
        def on_reply(result, error):
            if error is not None:
                done(None, "'%s': %s" % (peer.name, error))
                return
            try:
                done(on_result(result), None)
            except (BridgeError, ValueError, TypeError, KeyError) as e:
                done(None, "'%s' sent an invalid reply (%s)" % (peer.name, e))
        try:
            peer.request(method, params, on_reply)
        except rpc.NotSent as e:
            raise BridgeError("'%s': %s" % (peer.name, e))

    # The methods. Each takes (params, who, done); who.require(action)
    # first: what the caller may do here is also what it may do through
    # here, where the target then applies its own allow: to this instance.
    def _gcode_script(self, params, who, done):
        who.require('gcode')
        script = _str(params, 'script')
        peer = self._peer(_str(params, 'target'))
        if peer.is_self:
            self.runner.run_script(script, "router/gcode/script",
                                   on_done=lambda err: done(
                                       {} if err is None else None, err))
            return
        try:
            peer.run_script(script, lambda _result, err: done(
                {} if err is None else None,
                None if err is None else "'%s': %s" % (peer.name, err)))
        except rpc.NotSent as e:
            raise BridgeError("'%s' cannot take G-code now: %s"
                              % (peer.name, e))

    def _event_subscribe(self, params, who, done):
        who.require('events')
        event = event_param(params)
        gcode = _str(params, 'gcode')
        kind = params.get('callback_type', 'gcode')
        if kind not in ('gcode', 'webhook'):
            raise BridgeError("callback_type must be gcode or webhook")
        own = who.peer.name if who.peer is not None else self.peers.own_name
        peer = self._peer(params.get('callback_target') or own)
        if peer.name != own or who.peer is None:
            # A handler that runs G-code (or calls an endpoint) anywhere
            # but on a served caller itself is G-code done by this instance
            who.require('gcode')
        bus = self.eventbus
        if peer.is_self:
            if kind == 'webhook':
                raise BridgeError("a webhook callback needs a callback_target"
                                  " other than this instance")
            done({'added': bus.subscribe(event, gcode)}, None)
        elif peer.has_module:
            # Handlers live where they run
            self._request(peer, 'router/event/subscribe',
                          {'event': event, 'gcode': gcode,
                           'callback_type': kind}, done, lambda r: r)
        else:
            done({'added': bus.subscribe(event, gcode, peer.name, kind)},
                 None)

    def _event_trigger(self, params, who, done):
        who.require('events')
        event = event_param(params)
        context = params.get('context') or {}
        events.check_context(context)
        missed = self.eventbus.trigger(event, context, who.name)
        done({'event': event, 'not_reached': missed}, None)

    def _printers_list(self, params, who, done):
        who.require('query')
        printers = self.printers_list()
        callback = callback_param(params, who)
        if callback:
            self._run_callback(who, callback, {
                'PRINTERS': json.dumps(printers, sort_keys=True,
                                       separators=(',', ':'))},
                "gcode_callback of router/printers/list")
        done({'printers': printers}, None)

    def _permitted(self, peer, action):
        if not peer.permits(action):
            raise BridgeError(peer.refusal(action))
        return peer

    def _target(self, params, who, action):
        """The target peer, once both sides allow the action."""
        who.require(action)
        return self._permitted(self._peer(_str(params, 'target')), action)

    def _proxy(self, params, who, done, method, request, field, kind,
               callback_params):
        """A query of the target for the caller: the reply's field must be
        of that kind; a gcode_callback gets callback_params(peer, value)."""
        peer = self._target(params, who, 'query')
        callback = callback_param(params, who)
        def on_result(result):
            value = result[field]
            if not isinstance(value, kind):
                raise ValueError("%s is not a %s" % (field, kind.__name__))
            if callback:
                self._run_callback(who, callback, callback_params(peer, value),
                                   "gcode_callback of router/%s" % (method,))
            return result
        self._request(peer, method, request, done, on_result)

    def _objects_list(self, params, who, done):
        self._proxy(params, who, done, 'objects/list', {}, 'objects', list,
                    lambda peer, names: {
                        'OBJECTS': ','.join(str(n) for n in names),
                        'PRINTER': peer.name})

    def _objects_query(self, params, who, done):
        self._proxy(params, who, done, 'objects/query',
                    {'objects': objects_param(params)}, 'status', dict,
                    lambda peer, status: subscriptions.callback_params(
                        peer.name, status))

    def _objects_subscribe(self, params, who, done):
        peer = self._target(params, who, 'subscribe')
        objects = objects_param(params)
        subscriptions.check_followable(objects)
        callback = callback_param(params, who, required=True)
        runs_on = None if who.peer is None else who.peer.name
        peer.subscribe(subscriptions.Subscription(callback, objects,
                                                  runs_on=runs_on))
        done({}, None)
