# Reliability against real klippy processes: a fake peer that speaks
# garbage on the API socket protocol, and fuzzed ROUTER_* G-code and
# router/* endpoint parameters. Nothing a peer or a user sends may shut
# klippy down or end in a traceback through the module: bad input is an
# error and a link reset, nothing else.
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import math, os, random, re, time
import pytest
from harness import ApiError, Mesh, wait_until
from fakepeer import ETX, WEBHOOKS, FakePeer, Scenario, frame

pytestmark = pytest.mark.reliability

try:
    import hypothesis
    from hypothesis import strategies as st
except ImportError:   # a seeded random generator instead
    hypothesis = None

BAD_LOG = ('unhandled exception', 'internal error', 'repeat unhandled')
ROUTER_FRAME_RE = re.compile(r'File "[^"]*/router/[^"]*"')


# Klipper logs this once when nobody reads its pty and the buffer is full
# (a flood of '!!' reports fills it). Its traceback shows the module's
# frames only as the context of the exception being handled when the
# report was written; it is no failure of the module.
PTY_FULL_RE = re.compile(
    r'Write g-code response\nTraceback \(most recent call last\):\n'
    r'.*?\nBlockingIOError: [^\n]*\n', re.S)


def log_problems(text):
    """What in a klippy log says the module failed: the bad phrases and
    traceback frames inside the module."""
    text = PTY_FULL_RE.sub('', text)
    low = text.lower()
    found = [p for p in BAD_LOG if p in low]
    found += ROUTER_FRAME_RE.findall(text)[:3]
    return found


def excerpt(text, problems):
    """The log around the first problem."""
    low = text.lower()
    pos = min([low.find(p.lower()) for p in problems
               if low.find(p.lower()) >= 0] or [len(text)])
    start = text.rfind('Traceback', 0, pos)
    start = pos - 1500 if start < 0 or pos - start > 5000 else start - 500
    return text[max(0, start):pos + 1500]


def assert_healthy(node):
    assert node.alive(), "%s exited:\n%s" % (node.name, node.log_tail(80))
    assert node.state() == 'ready', node.log_tail(80)
    text = node.log_text()
    problems = log_problems(text)
    assert not problems, "%s: %s\n%s" % (node.name, problems,
                                         excerpt(text, problems))


def assert_still_works(node, peer='led'):
    """Local G-code, ROUTER_PRINTERS_LIST and a script on a real peer."""
    node.gcode("ROUTER_PRINTERS_LIST")
    node.gcode("M118 still-alive")
    node.gcode("ROUTER_GCODE_SCRIPT TARGET=%s WAIT=1 SCRIPT='M118 ok'"
               % (peer,))


# ---------------------------------------------------------------------------
# 1. A peer that speaks garbage
# ---------------------------------------------------------------------------

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
        hooks={'router/event/deliver': error_hook(7)},
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
            excerpt(text, log_problems(text) or ['shutdown'])))
    text = main.log_text()[since:]
    problems = log_problems(text)
    state = main.state()
    assert main.alive() and state == 'ready' and not problems, \
        "%s: state %s, %s\n%s" % (what, state, problems,
                                  excerpt(text, problems or ['shutdown']))
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


# ---------------------------------------------------------------------------
# 2. Fuzzed G-code and endpoint parameters
# ---------------------------------------------------------------------------

FUZZ_MACROS = r"""
[gcode_macro FUZZ_CB]
gcode:
  {action_respond_info("FUZZ_CB " ~ (params|tojson))}
"""

# Never fuzzed: commands (and API methods) that legitimately stop or block
# a printer, and nested router commands (mutual waits, event storms).
DANGEROUS = ('M112', 'RESTART', 'EMERGENCY', 'SHUTDOWN', 'SAVE_CONFIG',
             'ROUTER', 'G4', 'M400', 'M109', 'M190', 'TEMPERATURE_WAIT',
             'PRINT_FILE', 'PAUSE', 'GCODE/')
# Nor, on a G-code line, parameter names a value could smuggle in
SMUGGLED = ('SCRIPT', 'GCODE', 'WAIT', 'TIMEOUT', 'CALLBACK')


def safe(text, line=True):
    up = text.upper()
    deny = DANGEROUS + SMUGGLED if line else DANGEROUS
    return not any(d in up for d in deny) and '\n' not in text \
        and '\\' not in text


HOSTILE = [
    '', ' ', '"', "'", '"unbalanced', "'unbalanced", 'a"b', "a'b", '""',
    "''", '=', '==', 'a=b', '=x', ';', '#', '*', 'x;y', 'x#y', 'x*y',
    ';comment', 'nan', 'NaN', 'inf', '-inf', 'Infinity', '-1', '0', '1',
    '2', '0.0', '1e309', '-1e309', '1e-309', '0x10', '1_000', '\u0661',
    '86400', '86400.1', '0.0005', 'None', 'null', 'true', '{}', '[]',
    '{lane}', '{', '}', '{{x}}', '%s', '%(x)s', '\u00e9\u2713\u4e2d',
    '\U0001f642', '\u202e', '\ufeff', '\u200b', '\x00', '\x1b[31m', '\x7f',
    '\r', '\t', 'a\tb', 'x' * 64, 'x' * 65, 'x' * 101, 'A' * 5000,
    'led', 'LED', ' led ', 'led;', 'led#', 'main', 'Main', 'nobody',
    'fake', 'FUZZ_CB', 'fuzz_cb', 'M118', 'M118 hi', 'FUZZ_CB A=1',
    'FUZZ_CB A={lane}', 'FUZZ_CB A={missing}', 'NOT_A_COMMAND',
    'print_stats', 'print_stats:state', 'toolhead,webhooks:state',
    'heater_generic chamber:temperature|target', 'a:', ':b', 'a:|',
    'a:b c', ',,,', 'webhooks', 'gcode_macro FUZZ_CB', 'ev', 'ev2',
    'a.b:c/d-e', 'k=v,k2=v2', 'k', 'k=', '=v', 'EVENT=x', 'SOURCE=x',
]
ALPHABET = ('abcxyzABCXYZ019_-.:/|,=;#*"\' \t\r{}[]()%$&!?<>~`^@'
            '\x00\x01\x1b\x7f\u00e9\u2713\u4e2d\U0001f642\u202e\ufeff')
KEYS = ['TARGET', 'SCRIPT', 'WAIT', 'TIMEOUT', 'OBJECTS', 'CALLBACK',
        'EVENT', 'GCODE', 'CONTEXT']
COMMAND_KEYS = {
    'ROUTER_PRINTERS_LIST': [],
    'ROUTER_GCODE_SCRIPT': ['TARGET', 'SCRIPT', 'WAIT', 'TIMEOUT'],
    'ROUTER_OBJECTS_LIST': ['TARGET', 'TIMEOUT'],
    'ROUTER_OBJECTS_QUERY': ['TARGET', 'OBJECTS', 'TIMEOUT'],
    'ROUTER_OBJECTS_SUBSCRIBE': ['TARGET', 'OBJECTS', 'CALLBACK'],
    'ROUTER_OBJECTS_UNSUBSCRIBE': ['TARGET', 'CALLBACK'],
    'ROUTER_EVENT_SUBSCRIBE': ['EVENT', 'GCODE'],
    'ROUTER_EVENT_UNSUBSCRIBE': ['EVENT', 'GCODE'],
    'ROUTER_EVENT_TRIGGER': ['EVENT', 'CONTEXT'],
}
EXTRA_KEYS = ['LANE', 'X', 'lane', 'EVENT', 'SOURCE', 'A_B', '_', '1X',
              'K' * 64, 'K' * 70, 'é', 'A-B']
SAFE_SCRIPTS = ['M118 fuzz', 'M118 "quoted text"', "M118 'x y'",
                'M118 a\\nM118 b', 'M118 \u00e9\u2713', 'FUZZ_CB A=1',
                'NOT_A_COMMAND', 'M118', '  ', '\\n', 'M118 x;y', '""']
SAFE_HANDLERS = ['M118', 'FUZZ_CB', 'FUZZ_CB A=1 B={lane}',
                 'FUZZ_CB A={missing}', 'NOT_A_COMMAND', 'RESPOND MSG=x',
                 'fuzz_cb a=1', 'FUZZ_CB "A=x y"', 'FUZZ_CB A', '9X',
                 'FUZZ_CB A="unbal']
SAFE_METHODS = ['info', 'objects/list', 'list_endpoints', 'no/such/method',
                'M118']
METHOD_KEYS = {
    'router/gcode/script': ['target', 'script'],
    'router/event/subscribe': ['event', 'gcode', 'callback_type',
                               'callback_target'],
    'router/event/trigger': ['event', 'context'],
    'router/printers/list': ['gcode_callback'],
    'router/objects/list': ['target', 'gcode_callback'],
    'router/objects/query': ['target', 'objects', 'gcode_callback'],
    'router/objects/subscribe': ['target', 'objects', 'gcode_callback'],
    'router/event/deliver': ['event', 'context', 'source'],
    'router/gcode': ['script'],
    'router/info': ['name'],
}


class RandomDraw:
    """The draws the generators make, from a seeded random generator.
    Hypothesis (when installed) only picks the seeds: its own draws favour
    small and repeated values, which on a real mesh means fewer distinct
    cases for the same time."""
    def __init__(self, rng):
        self.rng = rng

    def choice(self, seq):
        return self.rng.choice(list(seq))

    def integer(self, lo, hi):
        return self.rng.randint(lo, hi)

    def boolean(self, p=.5):
        return self.rng.random() < p

    def text(self, alphabet, max_size):
        return ''.join(self.rng.choice(alphabet)
                       for i in range(self.rng.randint(0, max_size)))


# Values a command accepts, so that one hostile parameter at a time also
# reaches the handlers' later checks and the peers.
VALID = {
    'SCRIPT': SAFE_SCRIPTS,
    'WAIT': ['0', '1'],
    'TIMEOUT': ['0.5', '5', '30', '0.001'],
    'OBJECTS': ['print_stats', 'print_stats:state', 'toolhead,webhooks:state',
                'gcode_macro FUZZ_CB', 'webhooks:state|state_message'],
    'CALLBACK': ['FUZZ_CB', 'fuzz_cb', ''],
    'EVENT': ['ev', 'ev2', 'EV', 'a.b:c/d-e'],
    'GCODE': SAFE_HANDLERS,
    'CONTEXT': ['k=v,k2=v2', 'lane=2', 'a=x y', ''],
}


def hostile_value(d):
    kind = d.integer(0, 9)
    if kind <= 4:
        return d.choice(HOSTILE)
    if kind <= 6:
        return d.text(ALPHABET, 30)
    if kind == 7:
        return d.choice(HOSTILE) + d.text(ALPHABET, 8) + d.choice(HOSTILE)
    if kind == 8:
        return repr(d.choice([0., -1., 1e300, 3.5, 1e-9, 86400.,
                              float('nan'), float('inf'), 2 ** 64]))
    # Huge or very long: rarely, each costs a 100 KB line
    return d.choice(['y' * 100000, 'n' * 20000 + '"', 'z' * 300])


def gen_value(d, key, names, hostile):
    """names: (this node, its peer)."""
    if key == 'TARGET' and not hostile:
        return d.choice([names[1]] * 4 + [names[1].upper(), names[0]])
    if key in VALID and not hostile:
        return d.choice(VALID[key])
    value = hostile_value(d)
    if key == 'SCRIPT':
        value = 'M118 ' + value
    if not safe(value):
        value = 'x'
    return value


def quote(d, value):
    style = d.integer(0, 13)
    if style == 0:
        return value
    if style == 1:
        return '"%s"' % (value,)
    if style == 2:
        return "'%s'" % (value,)
    if re.match(r'^[A-Za-z0-9_.:|,/-]+$', value):
        return value
    # As Klipper's shlex reads it: the value arrives as it is
    return '"%s"' % (value.replace('\\', '\\\\').replace('"', '\\"'),)


def gen_line(d, names):
    cmd = d.choice(sorted(COMMAND_KEYS))
    words = [cmd if d.boolean(.9) else cmd.lower()]
    keys = list(COMMAND_KEYS[cmd])
    if d.boolean(.3):
        keys.append(d.choice(KEYS + EXTRA_KEYS))
    # Valid parameters, one hostile one, or all hostile
    mode = d.integer(0, 9)
    bad = d.integer(0, len(keys)) if mode < 5 else None
    for i, key in enumerate(keys):
        if d.boolean(.05):
            continue   # missing
        hostile = mode >= 8 or i == bad
        value = gen_value(d, key.upper(), names, hostile)
        words.append('%s=%s' % (key if d.boolean(.9) else key.lower(),
                                quote(d, value)))
    if d.boolean(.05):
        words.append(d.choice(['junk', '=', '"', ';', 'A=1 B', 'A==']))
    return ' '.join(words).replace('\n', ' ')


def gen_json(d, depth=0):
    kind = d.integer(0, 11)
    if kind == 0 or depth > 3:
        return d.choice([None, True, False, 0, -1, 1, 2 ** 63, -2 ** 70,
                         1e308, float('nan'), float('inf'), 1.5, ''])
    if kind <= 3:
        return d.choice(HOSTILE + SAFE_HANDLERS + SAFE_METHODS)
    if kind == 4:
        return d.text(ALPHABET, 20)
    if kind == 5:
        return [gen_json(d, depth + 1) for i in range(d.integer(0, 3))]
    if kind == 6:
        return {d.choice(['a', '', '5x', 'lane', 'EVENT', 'source',
                          'print_stats', 'toolhead', 'k' * 80]):
                gen_json(d, depth + 1) for i in range(d.integer(0, 3))}
    if kind == 7:
        inner = 1
        for i in range(d.integer(1, 60)):
            inner = [inner] if d.boolean() else {'a': inner}
        return inner
    if kind == 8:
        return d.choice(['y' * 100000, 'x' * 5000])
    if kind == 9:
        return d.choice(['led', 'main', 'LED', 'nobody', 'FUZZ_CB', 'ev',
                         'gcode', 'webhook'])
    if kind == 10:
        return {'print_stats': d.choice([None, ['state'], [5], 'x', []]),
                d.choice(['toolhead', 'webhooks', '']): None}
    return d.choice(SAFE_SCRIPTS)


def json_safe(value):
    if isinstance(value, str):
        return safe(value, line=False) or value in SAFE_SCRIPTS
    if isinstance(value, list):
        return all(json_safe(v) for v in value)
    if isinstance(value, dict):
        return all(json_safe(k) and json_safe(v) for k, v in value.items())
    return True


VALID_JSON = {
    'script': SAFE_SCRIPTS,
    'gcode': SAFE_HANDLERS,
    'event': ['ev', 'ev2', 'EV'],
    'callback_type': ['gcode', 'gcode', 'gcode', 'webhook'],
    'gcode_callback': ['FUZZ_CB', 'fuzz_cb'],
    'objects': ['print_stats,toolhead', {'print_stats': None},
                {'webhooks': ['state'], 'toolhead': None}],
    'context': [{'lane': 2, 'note': 'a b'}, {}, {'k': [1, {'x': None}]}],
}


def gen_request(d, names):
    method = d.choice(sorted(METHOD_KEYS))
    params = {}
    keys = list(METHOD_KEYS[method])
    if d.boolean(.3):
        keys.append(d.choice(['extra', '', 'target', 'params', 'x' * 100]))
    mode = d.integer(0, 9)
    bad = d.integer(0, len(keys)) if mode < 5 else None
    for i, key in enumerate(keys):
        if d.boolean(.05):
            continue
        hostile = mode >= 8 or i == bad
        if key in ('target', 'callback_target', 'source', 'name') \
                and not hostile:
            value = d.choice([names[1]] * 4 + [names[1].upper(), names[0]])
        elif key in VALID_JSON and not hostile:
            value = d.choice(VALID_JSON[key])
        else:
            value = gen_json(d)
        if not json_safe(value):
            value = 'x'
        params[key] = value
    return method, params


class LogWatch:
    """The new part of a node's log since the last look."""
    def __init__(self, node):
        self.node = node
        self.offset = os.path.getsize(node.log)

    def new(self):
        with open(self.node.log, 'rb') as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode('utf-8', 'replace')


@pytest.fixture(scope='module')
def fuzz_pair(runtime):
    m = Mesh(runtime)
    m.add_router_node('main', ['led'], FUZZ_MACROS)
    m.add_router_node('led', ['main'], FUZZ_MACROS)
    with m.running():
        yield m


class Fuzzer:
    """Sends one case and checks at once that the node is still sane, so
    a failure names the input that caused it."""
    def __init__(self, mesh):
        self.mesh = mesh
        self.watch = {n: LogWatch(node) for n, node in mesh.nodes.items()}
        self.count = 0
        self.errors = 0

    def check(self, what):
        for name, node in self.mesh.nodes.items():
            assert node.alive(), "%s died after %r:\n%s" % (
                name, what, node.log_tail(60))
            # Anything a command queued on the peer has run before this
            info = node.client.request('info', {}, timeout=10.)
            assert info['state'] == 'ready', "%s is %s after %r:\n%s" % (
                name, info['state'], what, node.log_tail(60))
            text = self.watch[name].new()
            problems = log_problems(text)
            assert not problems, "%s: %s after %r:\n%s" % (
                name, problems, what, excerpt(text, problems))

    def gcode(self, node_name, line, seed):
        self.count += 1
        what = (seed, node_name, line[:300])
        try:
            self.mesh[node_name].gcode(line, timeout=10.)
        except ApiError:
            self.errors += 1
        except TimeoutError:
            raise AssertionError("no reply (a hang) to %r" % (what,))
        self.check(what)

    def request(self, node_name, method, params, seed):
        self.count += 1
        what = (seed, node_name, method, str(params)[:300])
        # Mainline Klipper decodes requests with msgspec, which drops one
        # holding NaN or Infinity without a reply: it never reaches the
        # module. Other flavors pass it on.
        nonfinite = has_nonfinite(params)
        try:
            self.mesh[node_name].client.request(
                method, params, timeout=3. if nonfinite else 10.)
        except ApiError:
            self.errors += 1
        except TimeoutError:
            if not nonfinite:
                raise AssertionError("no reply (a hang) to %r" % (what,))
        self.check(what)


def has_nonfinite(value):
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def finish_fuzz(mesh, fuzzer, minimum):
    assert fuzzer.count >= minimum, fuzzer.count
    # Mostly errors, but not only: the generators reach the handlers
    assert 0 < fuzzer.errors < fuzzer.count, (fuzzer.errors, fuzzer.count)
    for node in mesh.nodes.values():
        node.gcode("ROUTER_OBJECTS_UNSUBSCRIBE TARGET=%s" % (
            'led' if node.name == 'main' else 'main',))
    mesh.wait_links()
    fuzzer.check('after the fuzzing')
    assert_still_works(mesh['main'], 'led')
    assert_still_works(mesh['led'], 'main')


GCODE_CASES = 400
ENDPOINT_CASES = 200
PAIRS = [('main', 'led'), ('led', 'main')]   # (node, its peer)


def fuzz_gcode_case(fuzzer, seed):
    d = RandomDraw(random.Random(seed))
    names = d.choice(PAIRS)
    fuzzer.gcode(names[0], gen_line(d, names), seed)


def fuzz_endpoint_case(fuzzer, seed):
    d = RandomDraw(random.Random(seed))
    names = d.choice(PAIRS)
    method, params = gen_request(d, names)
    fuzzer.request(names[0], method, params, seed)


if hypothesis is not None:
    def fuzz_settings(examples):
        # No shrinking: after a shutdown every later input "fails" too, so
        # the first failing input is the one to report.
        return hypothesis.settings(
            max_examples=examples, deadline=None, derandomize=True,
            database=None,
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
            print_blob=False)

    SEEDS = st.integers(0, 2 ** 32 - 1)

    def test_fuzz_gcode(fuzz_pair):
        fuzzer = Fuzzer(fuzz_pair)
        @fuzz_settings(GCODE_CASES)
        @hypothesis.given(SEEDS)
        def run(seed):
            fuzz_gcode_case(fuzzer, seed)
        run()
        finish_fuzz(fuzz_pair, fuzzer, GCODE_CASES * 9 // 10)

    def test_fuzz_endpoints(fuzz_pair):
        fuzzer = Fuzzer(fuzz_pair)
        @fuzz_settings(ENDPOINT_CASES)
        @hypothesis.given(SEEDS)
        def run(seed):
            fuzz_endpoint_case(fuzzer, seed)
        run()
        finish_fuzz(fuzz_pair, fuzzer, ENDPOINT_CASES * 9 // 10)
else:
    def test_fuzz_gcode(fuzz_pair):
        fuzzer = Fuzzer(fuzz_pair)
        for seed in random.Random(20240611).sample(range(2 ** 32),
                                                   GCODE_CASES):
            fuzz_gcode_case(fuzzer, seed)
        finish_fuzz(fuzz_pair, fuzzer, GCODE_CASES)

    def test_fuzz_endpoints(fuzz_pair):
        fuzzer = Fuzzer(fuzz_pair)
        for seed in random.Random(20240612).sample(range(2 ** 32),
                                                   ENDPOINT_CASES):
            fuzz_endpoint_case(fuzzer, seed)
        finish_fuzz(fuzz_pair, fuzzer, ENDPOINT_CASES)


def test_endpoint_script_on_the_instance_itself(fuzz_pair):
    """router/gcode/script naming the instance that serves it runs the
    script there and replies at once."""
    for name in ('main', 'led'):
        node = fuzz_pair[name]
        watch = LogWatch(node)
        t0 = time.monotonic()
        try:
            result = node.client.request('router/gcode/script', {
                'target': name, 'script': 'M118 self'}, timeout=5.)
        except TimeoutError:
            pytest.fail("router/gcode/script with target '%s' on %s: no"
                        " reply within 5 s" % (name, name))
        assert result == {}
        assert time.monotonic() - t0 < 2.
        assert not log_problems(watch.new())


@pytest.mark.parametrize('callback', [5, True, ['FUZZ_CB'], {'a': 1}],
                         ids=['int', 'bool', 'list', 'dict'])
def test_endpoint_callbacks_of_wrong_type(fuzz_pair, callback):
    """A gcode_callback that is no string is an error, nothing else."""
    main = fuzz_pair['main']
    watch = LogWatch(main)
    for method in ('router/printers/list', 'router/objects/list',
                   'router/objects/query'):
        t0 = time.monotonic()
        try:
            main.client.request(method, {
                'target': 'led', 'objects': {'print_stats': None},
                'gcode_callback': callback}, timeout=5.)
        except ApiError as e:
            assert 'internal error' not in str(e).lower(), (method, str(e))
        except TimeoutError:
            pytest.fail("%s with gcode_callback=%r: no reply within 5 s"
                        % (method, callback))
        else:
            pytest.fail("%s accepted gcode_callback=%r" % (method, callback))
        assert time.monotonic() - t0 < 2.
        text = watch.new()
        problems = log_problems(text)
        assert not problems, "%s with gcode_callback=%r: %s\n%s" % (
            method, callback, problems, excerpt(text, problems))
    assert main.state() == 'ready'
