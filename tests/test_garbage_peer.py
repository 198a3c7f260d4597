# A peer that speaks garbage on the API socket protocol, against real
# klippy: nothing it sends may shut klippy down or end in a traceback
# through the module; bad input is a link reset, nothing else.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, re, time
import pytest
from harness import ApiError, Mesh, log_excerpt, log_problems, wait_until
from fakepeer import ETX, WEBHOOKS, FakePeer, Scenario, frame
from reliability import assert_healthy, assert_still_works

pytestmark = pytest.mark.reliability


def result_hook(result):
    return lambda conn, msg: conn.reply(msg, result=result)


def error_hook(error):
    return lambda conn, msg: conn.reply(msg, error=error)


def raw_hook(data):
    return lambda conn, msg: data


def push_after_ready(*msgs):
    return lambda conn: conn.push(*msgs)


def raw_after_ready(data):
    return lambda conn: conn.send(data)


def nested(depth, inner=b'1'):
    return b'[' * depth + inner + b']' * depth


MIB = 1024 * 1024


def trickle(conn):
    """A frame that never ends, a byte at a time, then hang up."""
    conn.send(b'{"id": 424242, "result": "')
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        conn.send(b'a')
        time.sleep(.01)
    conn.close()


def slow_valid(conn):
    """A valid push split into single bytes, then an unknown reply."""
    data = frame({'router': 'status', 'params': {'status': {
        'webhooks': dict(WEBHOOKS)}}}) + frame({'id': 777777, 'result': {}})
    for i in range(len(data)):
        conn.send(data[i:i + 1])
        time.sleep(.002)


def flood(conn):
    msgs = []
    for i in range(50000):
        kind = i % 5
        if kind == 0:
            msgs.append({'router': 'status', 'params': {'status': {
                'webhooks': dict(WEBHOOKS)}}})
        elif kind == 1:
            msgs.append({'id': 1000000 + i, 'result': {'x': i}})
        elif kind == 2:
            msgs.append({'method': 'notify_status_update', 'params': [i]})
        elif kind == 3:
            msgs.append({'router': 'status', 'params': {'status': {}}})
        else:
            msgs.append({'id': -i, 'error': {'message': 'x'}})
    conn.push(*msgs)


def call_push(method, params):
    return {'router': 'call', 'method': method, 'params': params}


# Remote-method pushes with wrong types: each must end as an error report
BAD_CALLS = [
    call_push('router/gcode/script', {'target': 5}),
    call_push('router/gcode/script', {'target': 'main', 'script': 5}),
    call_push('router/gcode/script', {'target': ['led'], 'script': 'M118 x'}),
    call_push('router/gcode/script', {'target': 'nobody', 'script': 'M118'}),
    call_push('router/gcode/script', {'target': 'fake', 'script': ''}),
    call_push('router/event/subscribe', {'event': 5, 'gcode': 'M118'}),
    call_push('router/event/subscribe', {'event': 'e', 'gcode': ['M118']}),
    call_push('router/event/subscribe', {'event': 'e', 'gcode': 'M118',
                                         'callback_type': {}}),
    call_push('router/event/subscribe', {'event': 'e', 'gcode': '"unbal',
                                         'callback_target': 7}),
    call_push('router/event/trigger', {'event': None}),
    call_push('router/event/trigger', {'event': 'e', 'context': [1, 2]}),
    call_push('router/event/trigger', {'event': 'e', 'context': {'5x': 1}}),
    call_push('router/event/trigger', {'event': 'e', 'context': "k=v"}),
    call_push('router/event/trigger', {'event': 'e', 'context': {
        'lane': float('nan'), 'deep': [[[[{'a': None}]]]]}}),
    call_push('router/printers/list', {'gcode_callback': 'not a macro'}),
    call_push('router/objects/list', {'target': {}}),
    call_push('router/objects/query', {'target': 'led', 'objects': 5}),
    call_push('router/objects/query', {'target': 'led',
                                       'objects': {'toolhead': 'x'}}),
    call_push('router/objects/query', {'target': 'led', 'objects': ''}),
    call_push('router/objects/subscribe', {'target': 'led',
                                           'objects': {'a': [5]},
                                           'gcode_callback': 'CB'}),
    call_push('router/objects/subscribe', {'target': 'led',
                                           'objects': 'toolhead',
                                           'gcode_callback': 'bad name'}),
    call_push('router/nope', {}),
    call_push(5, {}),
    call_push('router/gcode/script', [1]),
    call_push('router/gcode/script', 'x'),
    {'router': 'call'},
]


def scenarios():
    out = []
    def add(*a, **kw):
        out.append(Scenario(*a, **kw))
    # Garbage frames, sent as soon as the router connects
    add('invalid_json', 'close', 'protocol error',
        on_connect=b'{"id": 1, "result": {' + ETX)
    add('invalid_json_text', 'close', 'protocol error',
        on_connect=b'hello klipper' + ETX)
    add('bad_utf8', 'close', 'protocol error',
        on_connect=b'{"x": "\xff\xfe\xc3"}' + ETX)
    add('list', 'close', 'protocol error', on_connect=b'[1, 2, 3]' + ETX)
    add('string', 'close', 'protocol error', on_connect=b'"ready"' + ETX)
    add('number', 'close', 'protocol error', on_connect=b'42' + ETX)
    add('null', 'close', 'protocol error', on_connect=b'null' + ETX)
    add('bare_nan', 'close', 'protocol error', on_connect=b'NaN' + ETX)
    add('bare_infinity', 'close', 'protocol error',
        on_connect=b'-Infinity' + ETX)
    add('huge_int', 'close', 'protocol error',
        on_connect=b'{"id": ' + b'9' * 5000 + b', "result": {}}' + ETX)
    add('deep_array', 'close', 'protocol error',
        on_connect=nested(100000) + ETX)
    add('deep_object', 'close', 'protocol error',
        on_connect=b'{"a":' * 100000 + b'1' + b'}' * 100000 + ETX)
    add('deep_in_reply', 'close', 'protocol error',
        on_connect=b'{"id": 1, "result": ' + nested(100000) + b'}' + ETX)
    add('huge_no_etx', 'close', 'protocol error: frame larger',
        on_connect=b'x' * (10 * MIB))
    add('huge_with_etx', 'close', 'protocol error: frame larger',
        on_connect=b'{"a": "' + b'y' * (9 * MIB) + b'"}' + ETX)
    # Replies to the handshake with wrong types
    add('info_result_string', 'close', 'protocol error',
        hooks={'info': result_hook('x')})
    add('info_result_list', 'close', 'protocol error',
        hooks={'info': result_hook([1, 2])})
    add('info_result_null', 'close', 'protocol error',
        hooks={'info': result_hook(None)})
    add('info_state_int', 'close', 'protocol error',
        hooks={'info': result_hook({'state': 5})})
    add('info_state_list', 'close', 'protocol error',
        hooks={'info': result_hook({'state': ['ready']})})
    add('info_state_nan', 'close', 'protocol error',
        hooks={'info': lambda conn, msg: b'{"id": %d, "result": {"state":'
               b' NaN}}' % (msg['id'],) + ETX})
    add('info_state_unknown', 'close', 'protocol error',
        hooks={'info': result_hook({'state': 'exploded'})})
    add('info_error_list', 'close', 'handshake failed',
        hooks={'info': error_hook([1, 'x'])})
    add('info_error_string', 'close', 'handshake failed',
        hooks={'info': error_hook('')})
    add('info_error_message_int', 'close', 'handshake failed',
        hooks={'info': error_hook({'error': 5, 'message': 5})})
    add('info_odd_fields', 'open',
        hooks={'info': result_hook({'state': 'ready', 'state_message': {},
                                    'app': 17})})
    add('router_info_list', 'open',
        hooks={'router/info': result_hook([1])})
    add('router_info_name_int', 'open',
        hooks={'router/info': result_hook({'name': 5, 'peers': 'x'})})
    add('router_info_error_list', 'open',
        hooks={'router/info': error_hook([]),
               'objects/list': result_hook({'objects': [
                   5, None, 'gcode_macro', 'gcode_macro  ', {}, 'x' * 1000,
                   'gcode_macro ROUTER_ON_READY extra']})})
    add('router_info_allow_odd', 'open',
        hooks={'router/info': result_hook({'name': 'fake', 'allow': [
            'query', 5, None, {}, 'x' * 1000]})})
    add('router_info_allow_string', 'open',
        hooks={'router/info': result_hook({'name': 'fake',
                                           'allow': 'nothing'})})
    add('objects_list_string', 'open',
        hooks={'router/info': error_hook('no'),
               'objects/list': result_hook({'objects': 'gcode_macro X'})})
    add('objects_list_error', 'open',
        hooks={'router/info': error_hook('no'),
               'objects/list': error_hook({'message': ['x']})})
    add('register_error', 'open',
        hooks={'router/info': error_hook('no'),
               'register_remote_method': result_hook('x')})
    add('subscribe_status_string', 'close', 'protocol error',
        hooks={'objects/subscribe': result_hook({'status': 'x'})})
    add('subscribe_result_list', 'close', 'protocol error',
        hooks={'objects/subscribe': result_hook([])})
    add('subscribe_webhooks_string', 'close', 'protocol error',
        hooks={'objects/subscribe': result_hook({'status': {
            'webhooks': 'x'}})})
    add('subscribe_state_int', 'close', 'protocol error',
        hooks={'objects/subscribe': result_hook({'status': {
            'webhooks': {'state': 5}}})})
    add('subscribe_error_list', 'close', 'subscription failed',
        hooks={'objects/subscribe': error_hook([None])})
    add('subscribe_no_webhooks', 'open',
        hooks={'objects/subscribe': result_hook({'status': {
            'webhooks': {'state_message': 5}, 'toolhead': 'x'}})})
    # Replies with unknown ids and ids of the wrong type
    add('unknown_ids', 'open', after_ready=push_after_ready(
        {'id': 999999, 'result': {}}, {'id': -1, 'error': 'x'},
        {'id': 1.5, 'result': 1}, {'id': True, 'result': 1},
        {'id': '2', 'result': 1}, {'id': None}, {'id': [1]},
        {'id': {'a': 1}, 'error': None}, {'id': 2 ** 70, 'result': {}},
        {'id': 1, 'method': 'x'}, {}, {'result': {}}, {'error': {}}))
    # Pushes with wrong types
    add('status_params_string', 'close', 'protocol error',
        after_ready=push_after_ready({'router': 'status', 'params': 'x'}))
    add('status_no_params', 'close', 'protocol error',
        after_ready=push_after_ready({'router': 'status'}))
    add('status_status_list', 'close', 'protocol error',
        after_ready=push_after_ready({'router': 'status',
                                      'params': {'status': [1]}}))
    add('status_webhooks_string', 'close', 'protocol error',
        after_ready=push_after_ready({'router': 'status', 'params': {
            'status': {'webhooks': 'x'}}}))
    add('status_state_int', 'close', 'protocol error',
        after_ready=push_after_ready({'router': 'status', 'params': {
            'status': {'webhooks': {'state': 5}}}}))
    add('status_state_nan', 'close', 'protocol error',
        after_ready=raw_after_ready(
            b'{"router": "status", "params": {"status": {"webhooks":'
            b' {"state": NaN}}}}' + ETX))
    add('status_odd_values', 'open', after_ready=push_after_ready(
        {'router': 'status', 'params': {'status': {
            'toolhead': 'x', 'print_stats': [1], 5: 6, 'webhooks': {
                'state_message': ['x']}}}},
        {'router': 'status', 'params': {'status': {}, 'eventtime': 'x'}}))
    add('nan_values', 'open', after_ready=raw_after_ready(
        b'{"router": "status", "params": {"eventtime": NaN, "status":'
        b' {"print_stats": {"state": Infinity, "x": -Infinity, "y": NaN},'
        b' "webhooks": {"state": "ready", "state_message": NaN}}}}' + ETX
        + b'{"id": NaN, "result": Infinity}' + ETX))
    add('unknown_pushes', 'open', after_ready=push_after_ready(
        {'router': 'bogus', 'params': {}}, {'router': 5},
        {'router': None}, {'router': ['status']},
        {'method': 'notify_gcode_response', 'params': ['!! x']},
        {'method': 5, 'params': None}))
    add('bad_calls', 'open', after_ready=push_after_ready(*BAD_CALLS))
    add('call_flood', 'open', after_ready=push_after_ready(*(
        BAD_CALLS[i % len(BAD_CALLS)] for i in range(2000))))
    add('empty_frames', 'open', after_ready=raw_after_ready(
        ETX * 100000 + b'   \n\t' + ETX))
    add('big_legal_frame', 'open', after_ready=push_after_ready(
        {'router': 'other', 'x': 'z' * (2 * MIB - 100)}))
    add('costly_frame', 'close', 'protocol error: frame of',
        after_ready=raw_after_ready(b'{"a":[' + b'[],' * 100000 + b'[]]}'
                                    + ETX))
    add('flood', 'open', after_ready=flood)
    add('slow_valid', 'open', after_ready=slow_valid)
    add('trickle', 'ours', 'connection closed by peer', after_ready=trickle)
    add('garbage_after_ready', 'close', 'protocol error',
        after_ready=raw_after_ready(b'{"router": "status", "par' + ETX))
    add('huge_after_ready', 'close', 'protocol error: frame larger',
        after_ready=raw_after_ready(b'[' + b'0,' * (2 * MIB)))
    # Replies to the router's own queries, for commands a user runs
    add('query_reply_garbage', 'open',
        hooks={'objects/query': result_hook({'status': 'x'})},
        probe=lambda main: expect_error(
            main, "ROUTER_OBJECTS_QUERY TARGET=fake OBJECTS=print_stats",
            'invalid reply'))
    add('query_reply_list', 'open',
        hooks={'objects/query': result_hook([{'status': {}}])},
        probe=lambda main: expect_error(
            main, "ROUTER_OBJECTS_QUERY TARGET=fake OBJECTS=print_stats",
            'invalid reply'))
    # A reply as a stdlib-json Klipper could send it: NaN, odd values
    add('query_reply_odd_values', 'open',
        hooks={'objects/query': lambda conn, msg: (
            b'{"id": %d, "result": {"status": {"print_stats": {"state": NaN,'
            b' "x": [1, {"y": -Infinity}]}, "toolhead": [], "extra": 5}}}'
            % (msg['id'],)) + ETX},
        probe=lambda main: main.gcode(
            "ROUTER_OBJECTS_QUERY TARGET=fake"
            " OBJECTS=print_stats,toolhead,nothing"))
    add('list_reply_garbage', 'open',
        hooks={'objects/list': result_hook({'objects': {'a': 1}})},
        probe=lambda main: expect_error(
            main, "ROUTER_OBJECTS_LIST TARGET=fake", 'invalid reply'))
    add('list_reply_odd_names', 'open',
        hooks={'objects/list': result_hook({'objects': [
            None, 5, {'a': [1]}, '\x00\x1b[31m', 'é✓', 'x' * 10000]})},
        probe=lambda main: main.gcode("ROUTER_OBJECTS_LIST TARGET=fake"))
    add('script_reply_error_list', 'open',
        hooks={'script': error_hook(['boom', {'message': 1}])},
        probe=lambda main: expect_error(
            main, "ROUTER_GCODE_SCRIPT TARGET=fake WAIT=1 SCRIPT='M118 x'",
            "'fake'"))
    add('script_reply_result_odd', 'open',
        hooks={'script': result_hook('x')},
        probe=lambda main: main.gcode(
            "ROUTER_GCODE_SCRIPT TARGET=fake WAIT=1 SCRIPT='M118 x'"))
    add('script_reply_closes', 'close', 'protocol error',
        hooks={'script': raw_hook(b'[]' + ETX)},
        probe=lambda main: expect_error(
            main, "ROUTER_GCODE_SCRIPT TARGET=fake WAIT=1 SCRIPT='M118 x'",
            'connection lost'))
    add('endpoint_reply_garbage', 'open',
        hooks={'objects/query': result_hook({'status': 7})},
        probe=lambda main: expect_api_error(
            main, 'router/objects/query', {
                'target': 'fake', 'objects': {'print_stats': None},
                'gcode_callback': 'FAKE_CB'}, 'invalid reply'))
    add('deliver_reply_garbage', 'open',
        hooks={'router/mesh': error_hook(7)},
        probe=lambda main: main.gcode(
            "ROUTER_EVENT_TRIGGER EVENT=fake_ev LANE=1"))
    return out


def expect_error(main, line, text):
    with pytest.raises(ApiError) as e:
        main.gcode(line)
    assert text in str(e.value), str(e.value)


def expect_api_error(main, method, params, text):
    with pytest.raises(ApiError) as e:
        main.client.request(method, params)
    assert text in str(e.value), str(e.value)


FAKE_CONFIG = """
[router]
name: main

[router led]
socket: {led}

[router fake]
socket: {fake}
reconnect_delay: 0.02
reconnect_max_delay: 0.1
request_timeout: 5

[gcode_macro FAKE_CB]
gcode:
  {{action_respond_info("FAKE_CB " ~ (params|tojson))}}

[gcode_macro CB]
gcode:
"""


@pytest.fixture(scope='module')
def fake_mesh(runtime):
    m = Mesh(runtime)
    fake = FakePeer(os.path.join(m.workdir, 'fake.sock'))
    m.add('main', FAKE_CONFIG.format(led=m.sock('led'), fake=fake.path))
    m.add_router_node('led', ['main'])
    try:
        m.start()
        m.wait_links()
        # main follows print_stats on fake: garbage reaches the mirror
        m['main'].gcode("ROUTER_OBJECTS_SUBSCRIBE TARGET=fake"
                        " OBJECTS=print_stats,toolhead CALLBACK=FAKE_CB")
        m['main'].gcode("ROUTER_EVENT_SUBSCRIBE EVENT=fake_ev GCODE=CB")
        yield m, fake
    finally:
        fake.stop()
        m.close()


def fake_ready(main):
    # Not printer.router: an objects/query waits for klippy's 250 ms tick
    try:
        printers = main.client.request('router/printers/list', {})
    except Exception:
        return False
    return any(p['name'] == 'fake' and p['ready']
               for p in printers['printers'])


def wait_event(event, timeout, main, what):
    """Waits for event while checking that main keeps answering."""
    deadline = time.monotonic() + timeout
    while not event.wait(.1):
        assert main.alive(), main.log_tail(60)
        assert main.state() == 'ready', main.log_tail(60)
        assert time.monotonic() < deadline, "%s (log:\n%s)" % (
            what, main.log_tail(30))


@pytest.mark.parametrize('scenario', scenarios(), ids=repr)
def test_hostile_peer(fake_mesh, scenario):
    m, fake = fake_mesh
    main = m['main']
    wait_until(lambda: fake_ready(main), 10., what="fake ready")
    log_start = len(main.log_text())
    before = set(fake.live())
    fake.arm(scenario)
    fake.kick()
    wait_event(scenario.accepted, 10., main, "router did not redial")
    conn = scenario.conn
    if scenario.probe is not None:
        # The hooks answer what the probe asks
        wait_event(conn.ready, 10., main, "no handshake")
        wait_until(lambda: fake_ready(main), 5., what="fake ready")
        scenario.probe(main)
    wait_event(conn.injected, 15., main, "scenario did not run")
    if scenario.expect == 'close':
        wait_event(conn.ended, 10., main, "router kept the link")
        assert conn.closed_by_router, (scenario.name, conn.error)
    elif scenario.expect == 'ours':
        wait_event(conn.ended, 10., main, "fake did not hang up")
    else:
        # Everything sent so far is read before the reply to this query
        wait_until(lambda: fake_ready(main), 10., what="fake ready")
        main.gcode("ROUTER_OBJECTS_QUERY TARGET=fake OBJECTS=webhooks",
                   timeout=20.)
        assert not conn.ended.is_set(), (scenario.name, conn.error)
        assert conn.error is None, conn.error
    if scenario.reason is not None:
        pattern = re.compile(r'router: link \S*fake\.sock closed: '
                             + re.escape(scenario.reason))
        wait_until(lambda: pattern.search(main.log_text()[log_start:]),
                   5., what="log line '%s'" % (scenario.reason,))
    # The link comes back with a sane peer, main works throughout
    wait_until(lambda: fake_ready(main), 10., what="fake ready again")
    assert set(fake.live()) - before
    assert_healthy(main)
    assert_still_works(main)
    main.gcode("ROUTER_OBJECTS_QUERY TARGET=fake OBJECTS=webhooks")
    assert_healthy(m['led'])


def newest_ready_conn(fake, main):
    wait_until(lambda: fake_ready(main), 10., what="fake ready")
    return wait_until(lambda: ([c for c in fake.live() if c.ready.is_set()]
                               or [None])[-1], 5., what="fake connection")


def deep_reply(depth):
    def hook(conn, msg):
        return (b'{"id": %d, "result": {"status": {"print_stats": {"x": '
                % (msg['id'],) + nested(depth) + b'}}}}' + ETX)
    return hook


# Values nested just below what the router's decoder accepts: each frame
# is read, and then has to be encoded again deeper in the stack (klippy's
# API replies, json.dumps in a G-code handler, callback parameters).
DEEP_DEPTHS = range(950, 990)


def deep_step(main, what, action):
    """Runs action: main must answer, stay ready and log nothing bad."""
    since = len(main.log_text())
    try:
        result = action()
    except (TimeoutError, OSError) as e:
        # No reply: main went down while answering
        text = main.log_text()[since:]
        pytest.fail("%s: %r; main %s:\n%s" % (
            what, e, main.state(),
            log_excerpt(text, log_problems(text) or ['shutdown'])))
    text = main.log_text()[since:]
    problems = log_problems(text)
    state = main.state()
    assert main.alive() and state == 'ready' and not problems, \
        "%s: state %s, %s\n%s" % (what, state, problems,
                                  log_excerpt(text, problems or ['shutdown']))
    return result


def deep_frame(field, depth):
    return (b'{"router": "status", "params": {"status": {"print_stats":'
            b' {"%s": ' % (field.encode(),) + nested(depth) + b'}}}}' + ETX)


def link_keeps(conn, data):
    """Sends data; False when the router hangs up on it. No G-code waits
    meanwhile: the router reads it as it reads any update."""
    conn.send(data)
    return not conn.ended.wait(.2)


def query_deep(main, path):
    try:
        if path == 'gcode_query':
            main.gcode("ROUTER_OBJECTS_QUERY TARGET=fake OBJECTS=print_stats",
                       timeout=5.)
        else:
            main.client.request('router/objects/query', {
                'target': 'fake', 'objects': {'print_stats': None}},
                timeout=5.)
    except ApiError:
        pass   # an error is fine, a shutdown or a traceback is not


@pytest.mark.parametrize('path', ['callback', 'mirror', 'gcode_query',
                                  'endpoint_query'])
def test_deeply_nested_values_from_a_peer(mesh, path):
    fake = FakePeer(os.path.join(mesh.workdir, 'fake.sock'))
    try:
        mesh.add('main', FAKE_CONFIG.format(led=mesh.sock('led'),
                                            fake=fake.path))
        mesh.add_router_node('led', ['main'])
        mesh.start()
        mesh.wait_links()
        main = mesh['main']
        if path in ('gcode_query', 'endpoint_query'):
            for depth in DEEP_DEPTHS:
                conn = newest_ready_conn(fake, main)
                conn.hooks['objects/query'] = deep_reply(depth)
                deep_step(main, "depth %d (%s)" % (depth, path),
                          lambda: query_deep(main, path))
            assert_still_works(main)
            return
        # Into the mirror (with a callback, or without): the deepest value
        # the decoder takes (a binary search, each refusal resets the link)
        main.gcode("ROUTER_OBJECTS_SUBSCRIBE TARGET=fake OBJECTS=print_stats"
                   + (" CALLBACK=FAKE_CB" if path == 'callback' else ""))
        lo, hi = DEEP_DEPTHS[0], 1100
        while hi - lo > 1:
            mid = (lo + hi) // 2
            conn = newest_ready_conn(fake, main)
            if deep_step(main, "depth %d (%s)" % (mid, path),
                         lambda: link_keeps(conn, deep_frame('x', mid))):
                lo = mid
            else:
                hi = mid
        # Then values of each depth up to it in printer.router, which
        # klippy encodes for an API client
        conn = newest_ready_conn(fake, main)
        def fill_and_read():
            link_keeps(conn, b''.join(deep_frame('d%d' % (d,), d)
                                      for d in range(lo - 20, lo + 1)))
            main.router_status()
        deep_step(main, "depths %d to %d in printer.router" % (lo - 20, lo),
                  fill_and_read)
        assert_still_works(main)
    finally:
        fake.stop()


