# Unit tests of the peer session (router/peer/sansio/session.py): the
# protocol with one peer, without I/O. Each reconnect edge case the
# integration tests found runs here in milliseconds; tests/test_core.py
# runs them on real klippy.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import pytest
from router.link.sansio import framing, rpc
from router.peer.sansio import session
from router.peer.sansio.session import (Close, Deliver, Healthy, PeerSession,
                            ReadyChanged, Report, Send, Serve)
from router.peer.sansio.subscriptions import Subscription

READY_INFO = {'state': 'ready', 'state_message': 'Printer is ready',
              'app': 'Klipper'}
WEBHOOKS = {'state': 'ready', 'state_message': 'Printer is ready'}
NO_CALLBACK = rpc.Error('No registered callback for path router/info')
KLIPPER_ENDPOINTS = ['list_endpoints', 'info', 'gcode/script',
                     'objects/list', 'objects/subscribe']
MODULE_ENDPOINTS = KLIPPER_ENDPOINTS + ['router/info', 'router/gcode']


class Clock:
    def __init__(self):
        self.now = 100.

    def __call__(self):
        return self.now


class Driver:
    """Plays the glue: keeps the sends the session asked for, answers them
    and collects every other action."""
    def __init__(self, **kw):
        self.clock = Clock()
        self.s = PeerSession('led', 'main', self.clock, **kw)
        self.sends = []
        self.actions = []

    def take(self, actions):
        for a in actions:
            (self.sends if isinstance(a, Send) else self.actions).append(a)
        return actions

    def pending(self, method):
        return [s for s in self.sends if s.method == method]

    def answer(self, method, result=None, error=None):
        send = self.pending(method)[0]
        self.sends.remove(send)
        return self.take(send.on_reply(result, error))

    def of(self, kind):
        return [a for a in self.actions if isinstance(a, kind)]

    def answer_info(self, module=True):
        """The handshake's info and list_endpoints."""
        self.answer('info', READY_INFO)
        return self.answer('list_endpoints', {'endpoints': (
            MODULE_ENDPOINTS if module else KLIPPER_ENDPOINTS)})

    def handshake(self, module=True, status=None, allow=None):
        self.take(self.s.connected())
        self.answer_info(module)
        if module:
            reply = {'name': 'led', 'version': '0.2.0', 'peers': ['main']}
            if allow is not None:
                reply.update(allow=allow, known=True)
            self.answer('router/info', reply)
        else:
            # Not asked router/info: a method it does not have
            assert not self.pending('router/info')
            self.answer('objects/list', {'objects': [
                'webhooks', 'gcode_macro ROUTER_ON_READY', 'gcode_macro x']})
        status = dict(status or {})
        status.setdefault('webhooks', dict(WEBHOOKS))
        return self.answer('objects/subscribe', {'status': status})



@pytest.mark.parametrize('reply, error, want', [
    (None, NO_CALLBACK, 'leave alone'),
    (['not', 'an', 'object'], None, 'leave alone'),
    (None, rpc.Error('timed out', rpc.TIMEOUT), 'close'),
    (None, rpc.Error('not connected', rpc.LOCAL), 'close'),
    (None, rpc.Error('closed', rpc.LOST), 'nothing')])
def test_a_peer_that_must_run_the_module_is_never_served(reply, error, want):
    """A discovered peer (module_required) whose router/info says no
    module: left alone, without Serve, objects/list or a subscription;
    a timeout (or a request not sent) closes to dial again, a lost
    connection does nothing."""
    d = Driver(serve=False, module_required=True)
    d.take(d.s.connected())
    d.answer_info()
    d.answer('router/info', reply, error)
    assert not d.of(Serve) and not d.sends
    assert not d.s.has_module and not d.s.ready
    left = d.of(session.LeaveAlone)
    closed = d.of(Close)
    assert {'leave alone': (len(left), len(closed)) == (1, 0),
            'close': (len(left), len(closed)) == (0, 1),
            'nothing': not d.actions}[want], d.actions
    if left:
        assert left[0].reason == session.NO_MODULE

def test_router_info_is_asked_only_where_it_is_an_endpoint():
    """Snapmaker's U1 fork raises an exception on its screen for a request
    of a method it does not have: a Klipper without the module is never
    asked router/info. A discovered peer is left alone for it."""
    d = Driver(serve=False, module_required=True)
    d.take(d.s.connected())
    d.answer_info(module=False)
    assert not d.sends and [a.reason for a in d.of(session.LeaveAlone)] == [
        session.NO_MODULE]
    # No list in the answer: asked, as before list_endpoints existed
    for reply, error in ((None, rpc.Error('no callback')), ([], None),
                         (None, rpc.Error('timed out', rpc.TIMEOUT))):
        d = Driver()
        d.take(d.s.connected())
        d.answer('info', READY_INFO)
        d.answer('list_endpoints', reply, error)
        assert [x.method for x in d.sends] == ['router/info']
    d = Driver()
    d.take(d.s.connected())
    d.answer('info', READY_INFO)
    assert d.answer('list_endpoints', None, rpc.Error('gone', rpc.LOST)) == []
    assert not d.sends


def test_handshake_with_a_module_peer_ends_ready():
    d = Driver()
    assert d.s.phase == session.Phase.DISCONNECTED
    d.take(d.s.connected())
    assert d.s.phase == session.Phase.CONNECTING
    assert d.pending('info')[0].params['client_info']['name'] == 'main'
    d.answer('info', READY_INFO)
    assert d.pending('list_endpoints')[0].params == {}
    d.answer('list_endpoints', {'endpoints': MODULE_ENDPOINTS})
    assert d.pending('router/info')[0].params == {'name': 'main'}
    d.answer('router/info', {'name': 'led', 'allow': ['query'],
                             'known': True})
    assert not d.of(Serve) and not d.pending('objects/list')
    sub = d.pending('objects/subscribe')[0]
    assert sub.params['objects'] == {'webhooks': ['state', 'state_message']}
    assert sub.params['response_template'] == {'router': 'status'}
    d.answer('objects/subscribe', {'status': {'webhooks': WEBHOOKS}})
    assert d.s.phase == session.Phase.READY and d.s.ready and d.s.has_module
    assert d.of(Healthy) and d.of(ReadyChanged) == [
        ReadyChanged(True, 'ready')]
    assert d.s.permits('query') and not d.s.permits('gcode')


def test_handshake_with_a_plain_klipper_serves_it_and_reads_its_macros():
    d = Driver()
    d.handshake(module=False)
    assert d.s.ready and not d.s.has_module
    assert len(d.of(Serve)) == 1
    assert d.s.remote_macros == frozenset(['ROUTER_ON_READY', 'X'])
    assert d.s.permits('gcode')          # it has no allow: of its own
    d = Driver(serve=False)
    d.handshake(module=False)
    assert not d.of(Serve)


@pytest.mark.parametrize('version, want', [
    (session.CLIENT_VERSION, True), ('0.4.0', True), ('1.0', True),
    ('0.3.0', False), ('0.2.0', False), (None, False), ('x', False)])
def test_scripts_output_is_pushed_by_module_peers_from_0_4(version, want):
    """Older ones get Klipper's own gcode/subscribe_output instead."""
    d = Driver()
    d.take(d.s.connected())
    d.answer_info()
    d.answer('router/info', {'name': 'led', 'version': version})
    assert d.s.has_module and d.s.script_output is want
    d = Driver()
    d.handshake(module=False)
    assert not d.s.script_output


def test_own_link_serves_and_does_not_subscribe_or_ping():
    d = Driver(is_self=True)
    d.take(d.s.connected())
    d.answer_info()
    d.answer('router/info', {'name': 'led'})
    assert d.of(Serve) and d.of(Healthy) and d.s.session_up
    assert not d.pending('objects/subscribe')
    assert d.s.tick() == ([], None)


def test_unlisted_instance_is_told_and_refused_here():
    d = Driver()
    d.take(d.s.connected())
    d.answer_info()
    d.answer('router/info', {'name': 'led', 'allow': [], 'known': False})
    assert not d.s.permits('gcode')
    assert "add [router main] to led's config" in d.s.refusal('gcode')
    # Its Klipper is ready and it answers: still not ready here, a phase
    # of its own that says the fix
    d.answer('objects/subscribe', {'status': {'webhooks': dict(WEBHOOKS)}})
    assert d.s.session_up and not d.s.ready
    assert d.s.phase is session.Phase.UNLISTED
    assert "add [router main] to led's config" in d.s.unavailable('')
    assert "add [router main] to led's config" in d.s.shown_message()
    # led restarts with the section: the next keepalive learns it
    d.take(d.s.tick()[0])
    assert d.answer('router/info', {'name': 'led', 'allow': ['gcode'],
                                    'known': True})[0] == ReadyChanged(
        True, 'ready')
    assert d.s.ready and d.s.shown_message() == 'Printer is ready'


def test_name_mismatch_is_reported():
    d = Driver()
    d.take(d.s.connected())
    d.answer_info()
    d.answer('router/info', {'name': 'stranger'})
    [report] = d.of(Report)
    assert "calls itself 'stranger'" in report.text


def test_handshake_failures_close_with_the_reason():
    d = Driver()
    d.take(d.s.connected())
    assert d.answer('info', error=rpc.Error('boom')) == [
        Close('handshake failed: boom')]
    d = Driver()
    d.take(d.s.connected())
    with pytest.raises(framing.ProtocolError):
        d.answer('info', ['not', 'a', 'dict'])
    d = Driver()
    d.take(d.s.connected())
    with pytest.raises(framing.ProtocolError):
        d.answer('info', {'state': 'dancing'})


def test_keepalive_rtt_unresponsive_and_back():
    d = Driver()
    d.handshake()
    actions, interval = d.s.tick()
    d.take(actions)
    assert interval == session.PING_INTERVAL
    # One keepalive at a time
    assert d.s.tick() == ([], session.PING_INTERVAL)
    d.clock.now += .003
    d.answer('info', READY_INFO)
    assert d.s.rtt == pytest.approx(.003)
    d.take(d.s.tick()[0])
    assert d.answer('info', error=rpc.Error('timed out', rpc.TIMEOUT)) == [
        ReadyChanged(False, 'unresponsive')]
    assert d.s.phase == session.Phase.UNRESPONSIVE
    assert 'not responding' in d.s.unavailable('')
    d.take(d.s.tick()[0])
    assert d.answer('info', READY_INFO) == [ReadyChanged(True, 'ready')]


def test_keepalive_reply_is_taken_inline_only_when_it_changes_nothing():
    # Link.take_now runs an inline reply's callback inside the fd callback,
    # where nothing may run that could close a link: the reply of a
    # keepalive to a peer that answers and knows this instance only
    # notes the round trip
    d = Driver()
    d.handshake()
    d.take(d.s.tick()[0])
    ping = d.pending('info')[0]
    assert ping.inline
    assert ping.on_reply(READY_INFO, None) == []
    d.sends.remove(ping)
    # After a timeout its reply makes the link ready again: not inline
    d.take(d.s.tick()[0])
    d.answer('info', error=rpc.Error('timed out', rpc.TIMEOUT))
    d.take(d.s.tick()[0])
    assert not d.pending('info')[0].inline
    # A peer that did not know this instance is asked again (router/info):
    # what it answers may change the links, so not inline either
    d = Driver()
    d.take(d.s.connected())
    d.answer_info()
    d.answer('router/info', {'name': 'led', 'version': '0.2.0',
                             'allow': [], 'known': False})
    d.answer('objects/subscribe', {'status': {'webhooks': dict(WEBHOOKS)}})
    d.take(d.s.tick()[0])
    relearn = d.pending('router/info')
    assert relearn and not relearn[0].inline


def test_keepalive_that_could_not_be_sent_is_tried_again():
    d = Driver()
    d.handshake()
    d.take(d.s.tick()[0])
    assert d.answer('info', error=rpc.Error('buffer full', rpc.LOCAL)) == []
    assert d.s.ready
    actions, interval = d.s.tick()
    assert [a.method for a in actions] == ['info']


def test_klipper_state_changes_and_restarts_are_allowed_when_not_ready():
    d = Driver()
    d.handshake()
    d.actions.clear()
    d.take(d.s.push({'router': 'status', 'params': {'status': {
        'webhooks': {'state': 'shutdown',
                     'state_message': 'MCU shutdown\nmore'}}}}))
    assert d.of(ReadyChanged) == [ReadyChanged(False, 'shutdown')]
    assert d.s.phase == session.Phase.NOT_READY
    assert d.s.unavailable('') == ("Klipper state is 'shutdown':"
                                            " MCU shutdown")
    assert d.s.unavailable('', restart=True) is None
    assert d.s.describe('') == 'connected, Klipper shutdown'


def test_coded_state_messages_of_the_u1_fork_read_as_their_text():
    """Snapmaker's U1 fork puts a JSON object on the first line of its
    error and shutdown messages: its "msg" is the text shown and quoted."""
    d = Driver()
    d.handshake()
    coded = ('{"coded": "0003-0522-0000-0019", "oneshot": 0, "msg":'
             ' "Shutdown due to M112 command"}\nOnce the underlying issue')
    d.take(d.s.push({'router': 'status', 'params': {'status': {
        'webhooks': {'state': 'shutdown', 'state_message': coded}}}}))
    assert d.s.state_message == ('Shutdown due to M112 command\n'
                                 'Once the underlying issue')
    assert d.s.unavailable('') == ("Klipper state is 'shutdown':"
                                   " Shutdown due to M112 command")
    # Anything else stays as it was
    pm = session.plain_message
    for text in ('{not json} x', '{"coded": "1"}', '{"msg": 5}', '[1]',
                 'Printer is ready', ' {"msg": "x"} y'):
        assert pm(text) == text.strip()
    assert pm(None) == '' and pm('{"msg": " a "}') == 'a'


def test_closed_then_reconnected_gives_full_state_first():
    d = Driver()
    sub = Subscription('CB', {'print_stats': ['state']})
    d.s.subs.add(sub)
    d.handshake(status={'print_stats': {'state': 'printing'}})
    [first] = d.of(Deliver)
    assert first.changes == [(sub, {'print_stats': {'state': 'printing'}})]
    # A delta: only what changed
    d.actions.clear()
    d.take(d.s.push({'router': 'status', 'params': {'status': {
        'print_stats': {'state': 'paused'}}}}))
    assert d.of(Deliver)[0].changes == [
        (sub, {'print_stats': {'state': 'paused'}})]
    # The link drops: not ready, with the reason
    d.actions.clear()
    assert d.s.closed('connection closed by peer') == [
        ReadyChanged(False, 'disconnected')]
    assert d.s.state_message == 'connection closed by peer'
    assert d.s.describe('x') == 'disconnected: x'
    assert d.s.unavailable('x') == 'not connected (x)'
    assert d.s.has_module        # kept while down
    # Back: the same value again is not a change for a subscription that
    # saw it, but the resubscription gives the full state to all
    d.actions.clear()
    d.handshake(status={'print_stats': {'state': 'paused'}})
    assert d.of(Deliver)[0].changes == [
        (sub, {'print_stats': {'state': 'paused'}})]


def test_only_the_newest_subscription_reply_counts():
    d = Driver()
    d.handshake()
    sub = Subscription('CB', {'toolhead': None})
    d.s.subs.add(sub)
    d.take(d.s.subscriptions_changed())
    d.take(d.s.subscriptions_changed())
    old, new = d.pending('objects/subscribe')
    assert old.on_reply({'status': {'toolhead': {'x': 1}}}, None) == []
    d.sends.remove(old)
    d.answer('objects/subscribe', {'status': {'toolhead': {'x': 2}}})
    assert d.of(Deliver)[-1].changes == [(sub, {'toolhead': {'x': 2}})]


def test_subscription_errors():
    d = Driver()
    d.handshake()
    d.take(d.s.subscriptions_changed())
    # Lost with the connection: nothing to do; refused by the peer: close
    assert d.answer('objects/subscribe', error=rpc.Error(
        'connection lost (x)', rpc.LOST)) == []
    d.take(d.s.subscriptions_changed())
    assert d.answer('objects/subscribe', error=rpc.Error('nope')) == [
        Close('subscription failed: nope')]
    d.take(d.s.subscriptions_changed())
    with pytest.raises(framing.ProtocolError):
        d.answer('objects/subscribe', {'status': 5})


def test_subscriptions_are_not_sent_where_not_allowed():
    d = Driver()
    d.s.subs.add(Subscription('CB', {'print_stats': None}))
    d.handshake(allow=['gcode'])
    [report] = d.of(Report)
    assert 'does not accept subscribe' in report.text
    assert d.s.ready     # the link still carries the state


def test_subscriptions_changed_waits_for_the_session():
    d = Driver()
    assert d.s.subscriptions_changed() == []
    d.take(d.s.connected())
    assert d.s.subscriptions_changed() == []


LISTED = {'objects': ['webhooks', 'print_stats', 'toolhead',
                      'gcode_macro EMPTY']}


def test_what_the_peer_lacks_is_asked_again_then_reported_once():
    """Klipper answers {} for an unknown object and None for an unknown
    field, as for an object without values and a None value: the session
    asks objects/list and objects/query before it reports, once per
    connection, and clears it when the peer has them."""
    d = Driver()
    cfg = Subscription('CB', {'print_stat': ['state'],
                              'print_stats': ['stat', 'state'],
                              'gcode_macro EMPTY': None}, from_config=True)
    d.s.subs.add(cfg)
    d.handshake(status={'print_stat': {'state': None},
                        'print_stats': {'stat': None, 'state': 'standby'},
                        'gcode_macro EMPTY': {}})
    assert d.of(Report) == []
    d.answer('objects/list', LISTED)
    # Only the object with a field answered None is queried, whole
    [query] = d.pending('objects/query')
    assert query.params == {'objects': {'print_stats': None}}
    d.answer('objects/query', {'status': {'print_stats': {
        'state': 'standby', 'filename': ''}}})
    want = ("object print_stat (did you mean print_stats?), field"
            " print_stats:stat (did you mean state?)")
    assert d.s.missing == want
    [report] = d.of(Report)
    assert report.text == ("'led' has no %s: no value comes for them"
                           " (followed by subscribe: of [router led])"
                           % (want,))
    # A new subscription reply on the same connection: asked again, not
    # reported again
    d.take(d.s.subscriptions_changed())
    d.answer('objects/subscribe', {'status': {
        'print_stat': {'state': None}, 'gcode_macro EMPTY': {},
        'print_stats': {'stat': None, 'state': 'standby'}}})
    d.answer('objects/list', LISTED)
    d.answer('objects/query', {'status': {'print_stats': {'state': 'x'}}})
    assert len(d.of(Report)) == 1 and d.s.missing == want
    # The next connection reports it again; a peer that has them clears it
    d.s.closed('gone')
    assert d.s.missing == want      # kept while down
    d.actions.clear()
    d.handshake(status={'print_stat': {'state': None},
                        'print_stats': {'stat': None, 'state': 'standby'},
                        'gcode_macro EMPTY': {}})
    d.answer('objects/list', LISTED)
    d.answer('objects/query', {'status': {'print_stats': {'state': 'x'}}})
    assert len(d.of(Report)) == 1
    d.s.closed('restarting with the objects')
    d.actions.clear()
    d.handshake(status={'print_stat': {'state': 'on'},
                        'print_stats': {'stat': 1, 'state': 'standby'},
                        'gcode_macro EMPTY': {}})
    d.answer('objects/list', {'objects': LISTED['objects'] + [
        'print_stat']})
    assert d.pending('objects/query') == [] and d.s.missing == ''
    assert d.of(Report) == []


def test_objects_are_checked_once_the_peer_is_ready():
    d = Driver()
    d.s.subs.add(Subscription('', {'toolhed': None}))
    d.take(d.s.connected())
    d.answer('info', dict(READY_INFO, state='startup'))
    d.answer('list_endpoints', {'endpoints': MODULE_ENDPOINTS})
    d.answer('router/info', {'name': 'led', 'version': '0.3.0'})
    d.answer('router/subscribe', {'status': {
        'toolhed': {}, 'webhooks': {'state': 'startup'}}})
    assert d.pending('objects/list') == []    # its objects may still come
    d.take(d.s.push({'router': 'status', 'params': {'status': {
        'webhooks': {'state': 'ready'}}}}))
    d.answer('objects/list', LISTED)
    assert d.s.missing == 'object toolhed (did you mean toolhead?)'
    [report] = d.of(Report)
    assert "(followed by ROUTER_OBJECTS_SUBSCRIBE without CALLBACK)" in (
        report.text)
    # Nothing suspect: nothing asked
    d.s.subs.remove(('', ''))
    d.take(d.s.subscriptions_changed())
    d.answer('router/subscribe', {'status': {'webhooks': {
        'state': 'ready'}}})
    assert d.pending('objects/list') == [] and d.s.missing == ''


def test_a_refusal_names_the_option_and_a_halted_peer_its_state():
    d = Driver()
    d.take(d.s.connected())
    d.answer_info()
    d.answer('router/info', {'name': 'led', 'allow': ['query'],
                             'known': True,
                             'where': '[router] allow_unlisted:'})
    assert d.s.refusal('gcode') == (
        "'led' does not accept gcode from 'main': its [router]"
        " allow_unlisted: does not include gcode")
    d.s.closed('x')
    d.take(d.s.connected())
    d.answer_info()
    d.answer('router/info', {'name': 'led', 'allow': [], 'known': True})
    assert d.s.refusal('query') == (
        "'led' does not accept query from 'main': its [router main] allow:"
        " does not include query")
    # Its own config halted it before it read [router main]
    d.s.closed('x')
    d.take(d.s.connected())
    d.answer('info', {'state': 'error', 'state_message':
                      "Option 'allow' in section 'router main': bad\n\nx"})
    d.answer('list_endpoints', {'endpoints': MODULE_ENDPOINTS})
    d.answer('router/info', {'name': 'led', 'allow': [], 'known': False})
    assert d.s.refusal('subscribe') == (
        "'led' is halted (Klipper state 'error': Option 'allow' in section"
        " 'router main': bad): it takes no subscribe from 'main' in that"
        " state; once fixed and restarted it must list [router main]")
