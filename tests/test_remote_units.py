# The remote link's pure parts: URLs, the websocket client and TLS without
# I/O (a client and a server talking through memory only)
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import hashlib, os, shutil, socket, ssl, subprocess, sys
import pytest
from harness import Moonraker, wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'klippy_extras'))
from router.link import ws_transport as remote   # noqa: E402
from router.link.sansio import tls, websocket   # noqa: E402

wsproto = websocket.load_wsproto()
needs_wsproto = pytest.mark.skipif(wsproto is None,
                                   reason="wsproto not installed")


@pytest.mark.parametrize('url, expect', [
    ('ws://10.0.0.2:7125/klippysocket', (False, '10.0.0.2', 7125,
                                        '/klippysocket')),
    ('ws://afc.local:7125', (False, 'afc.local', 7125, '/klippysocket')),
    ('WSS://afc.local/printer/klippysocket', (True, 'afc.local', 443,
                                              '/printer/klippysocket')),
    ('wss://[fe80::1]:7130/klippysocket', (True, 'fe80::1', 7130,
                                           '/klippysocket')),
    ('ws://h:1/klippysocket?token=abc', (False, 'h', 1,
                                         '/klippysocket?token=abc'))])
def test_urls(url, expect):
    assert remote.parse_url(url) == expect


@pytest.mark.parametrize('url', [
    'http://h:7125/klippysocket', 'ws://', 'ws://:7125/x', 'ws://h:0/x',
    'ws://h:99999/x', 'ws://h:port/x', 'ws://user@h/x', 'ws://h /x',
    'ws://hôte/x', '/tmp/klippy.sock', 'ws://[::1/x', 'ws://[::1]x/y'])
def test_bad_urls(url):
    with pytest.raises(ValueError):
        remote.parse_url(url)


def test_rejections_say_what_to_do_and_when_to_retry():
    text, after = remote.rejection_text(401, '')
    assert 'API key' in text and after == remote.REFUSED_RETRY
    text, after = remote.rejection_text(503, '')
    assert 'Klipper is not' in text and after == 0.
    text, after = remote.rejection_text(404, '')
    assert '/klippysocket' in text and after == remote.REFUSED_RETRY
    text, after = remote.rejection_text(500, 'x' * 1000)
    assert len(text) < 200


def test_host_header_and_numeric_addresses():
    assert remote.host_header('fe80::1', 7130) == '[fe80::1]:7130'
    assert remote.host_header('afc', 80) == 'afc:80'
    assert remote.numeric_address('10.1.2.3') is not None
    assert remote.numeric_address('::1') is not None
    assert remote.numeric_address('afc.local') is None


def server_side():
    """A wsproto server connection, to talk to the client in memory."""
    from wsproto import ConnectionType, WSConnection
    return WSConnection(ConnectionType.SERVER)


def handshake(client, server, accept=True, status=401):
    from wsproto.events import AcceptConnection, RejectConnection, Request
    server.receive_data(client.take_outgoing())
    requests = [e for e in server.events() if isinstance(e, Request)]
    assert len(requests) == 1
    if accept:
        return requests[0], client.receive(server.send(AcceptConnection()))
    return requests[0], client.receive(server.send(RejectConnection(
        status_code=status, has_body=False)))


@needs_wsproto
def test_websocket_opens_carries_frames_and_answers_pings():
    from wsproto.events import (BytesMessage, Ping, Pong, TextMessage)
    client = websocket.WsClient('afc:7125', '/klippysocket',
                                [(b'X-Api-Key', b'k' * 32)], 1000)
    server = server_side()
    request, events = handshake(client, server)
    assert (b'x-api-key', b'k' * 32) in request.extra_headers
    assert request.target == '/klippysocket' and request.host == 'afc:7125'
    assert events == [websocket.Opened()]
    # A message in pieces, split anywhere: one frame
    data = server.send(TextMessage(data='{"id":1,"result":{"é":2}}'))
    got = []
    for i in range(len(data)):
        got += client.receive(data[i:i + 1])
    assert got == [websocket.Message('{"id":1,"result":{"é":2}}'.encode())]
    # Our frames go as binary messages the bridge passes on as they are
    client.send_message(b'{"id":2}')
    server.receive_data(client.take_outgoing())
    assert [e.data for e in server.events()
            if isinstance(e, BytesMessage)] == [b'{"id":2}']
    # Pings are answered at once; our own pings get pongs
    assert client.receive(server.send(Ping(payload=b'p'))) == []
    server.receive_data(client.take_outgoing())
    assert any(isinstance(e, Pong) for e in server.events())
    client.ping()
    server.receive_data(client.take_outgoing())
    pong = [e for e in server.events() if isinstance(e, Ping)][0].response()
    assert client.receive(server.send(pong)) == [websocket.Pong()]
    assert client.receive(b'') == []   # never fed as the end of stream


@needs_wsproto
def test_websocket_bounds_messages_and_reports_refusals_and_closes():
    from wsproto.events import CloseConnection, TextMessage
    client = websocket.WsClient('h:1', '/klippysocket', [], 100)
    server = server_side()
    handshake(client, server)
    with pytest.raises(websocket.WsError):
        # Too big while it arrives, before it is whole
        client.receive(server.send(TextMessage(data='x' * 60,
                                               message_finished=False)))
        client.receive(server.send(TextMessage(data='x' * 60,
                                               message_finished=False)))
    client = websocket.WsClient('h:1', '/klippysocket', [], 100)
    _, events = handshake(client, server_side(), accept=False, status=401)
    assert events == [websocket.Rejected(401, '')]
    client = websocket.WsClient('h:1', '/klippysocket', [], 100)
    server = server_side()
    handshake(client, server)
    events = client.receive(server.send(CloseConnection(
        code=1001, reason='Klippy Disconnected')))
    assert events == [websocket.Closed(1001, 'Klippy Disconnected')]
    # The end of stream after it keeps the first code
    assert client.receive(None) == []
    assert client.closed.code == 1001
    client = websocket.WsClient('h:1', '/klippysocket', [], 100)
    with pytest.raises(websocket.WsError):
        client.receive(b'HTTP/1.1 200 OK\r\nbroken\r\n\r\n')


def make_cert(tmp_path, name='10.9.9.9'):
    if shutil.which('openssl') is None:
        pytest.skip("no openssl command")
    cert, key = str(tmp_path / 'c.pem'), str(tmp_path / 'k.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048',
                    '-nodes', '-keyout', key, '-out', cert, '-days', '2',
                    '-subj', '/CN=%s' % (name,), '-addext',
                    'subjectAltName=IP:%s' % (name,)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def tls_pair(tmp_path, client_context, fingerprint=None, name='10.9.9.9',
             cert_key=None):
    cert, key = cert_key or make_cert(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = tls.TlsPipe(client_context(cert), name, fingerprint)
    return client, server, s_in, s_out, cert


def run_handshake(client, server, s_in, s_out):
    """Moves bytes both ways until neither side has any; returns what the
    client decrypted."""
    plain = b''
    to_server = client.start()
    for i in range(20):
        if to_server:
            s_in.write(to_server)
        try:
            server.do_handshake()
        except ssl.SSLWantReadError:
            pass
        back = s_out.read()
        if not back and not to_server:
            break
        plain += client.feed(back) if back else b''
        to_server = client.take_outgoing()
    return plain


def test_tls_through_memory_with_a_ca_file(tmp_path):
    client, server, s_in, s_out, cert = tls_pair(
        tmp_path, lambda cert: tls.make_context(cert))
    client.write(b'GET / HTTP/1.1\r\n\r\n')   # before the handshake: kept
    run_handshake(client, server, s_in, s_out)
    assert client.ready
    s_in.write(client.take_outgoing())
    assert server.read(100) == b'GET / HTTP/1.1\r\n\r\n'
    server.write(b'HTTP/1.1 101\r\n')
    assert client.feed(s_out.read()) == b'HTTP/1.1 101\r\n'


def test_tls_refuses_an_untrusted_or_unpinned_certificate(tmp_path):
    client, server, s_in, s_out, cert = tls_pair(
        tmp_path, lambda cert: tls.make_context())
    with pytest.raises(tls.TlsError) as e:
        run_handshake(client, server, s_in, s_out)
    assert 'not trusted' in str(e.value)
    client, server, s_in, s_out, cert = tls_pair(
        tmp_path, lambda cert: tls.make_context(None, 'ab' * 32),
        fingerprint='ab' * 32)
    with pytest.raises(tls.TlsError) as e:
        run_handshake(client, server, s_in, s_out)
    assert 'not the pinned one' in str(e.value)


def test_fingerprints():
    assert tls.parse_fingerprint('AB:' * 31 + 'AB') == 'ab' * 32
    for bad in ('ab' * 31, 'zz' * 32, ''):
        with pytest.raises(ValueError):
            tls.parse_fingerprint(bad)


# On real klippy: a Klipper without the remote packages, and config errors
NO_WSPROTO = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data',
                          'no_wsproto')


def test_without_wsproto_local_peers_work_and_url_says_how_to_install(mesh):
    mesh.add_router_node('main', ['led'])
    mesh.add_router_node('led', ['main'])
    for node in mesh.nodes.values():
        node.pythonpath = [NO_WSPROTO]
    mesh.start()
    mesh.wait_links()
    mesh['main'].gcode('ROUTER_GCODE_SCRIPT TARGET=led WAIT=1 SCRIPT=M115')
    far = mesh.add('far', "[router]\nname: far\n[router afc]\n"
                   "url: ws://10.9.9.9:7125/klippysocket\n")
    far.pythonpath = [NO_WSPROTO]
    far.start()
    far.wait_state('error')
    msg = far.info()['state_message']
    assert 'wsproto' in msg and 'install.sh' in msg, msg


@pytest.mark.parametrize('section, expect', [
    ("socket: /tmp/x.sock\nurl: ws://h:1/klippysocket", "not both"),
    ("api_key: abc", "not neither"),
    ("url: http://h:1/klippysocket", "use ws://host:port/klippysocket"),
    ("url: ws://h:1/klippysocket\ntls_ca_file: /etc/hosts", "needs a wss://"),
    ("url: wss://h:1/klippysocket\ntls_ca_file: /no/such/ca.pem",
     "cannot load /no/such/ca.pem"),
    ("url: wss://h:1/klippysocket\ntls_fingerprint: 12:34", "64 hex digits"),
    ("url: ws://h:1/klippysocket\napi_key: a\napi_key_file: /etc/hostname",
     "not both"),
    ("url: ws://h:1/klippysocket\napi_key_file: /no/such/key",
     "cannot read /no/such/key")])
def test_remote_config_errors(mesh, section, expect):
    node = mesh.add('main', "[router]\nname: main\n[router afc]\n%s\n"
                    % (section,))
    node.start()
    node.wait_state('error')
    msg = node.info()['state_message']
    assert expect in msg, msg


def test_unresolvable_name_is_an_error_of_that_peer_only(mesh):
    mesh.add_router_node('main', ['led'], "[router ghost]\nurl: "
                         "ws://no-such-host.invalid:7125/klippysocket\n")
    mesh.add_router_node('led', ['main'])
    mesh.start()
    main = mesh['main']
    wait_until(lambda: 'cannot resolve no-such-host.invalid' in
               main.router_status()['peers']['ghost']['last_error'], 10.)
    assert main.router_status()['peers']['led']['ready']
    main.gcode('ROUTER_GCODE_SCRIPT TARGET=led WAIT=1 SCRIPT=M115')


def test_a_pin_accepts_its_certificate_whatever_its_name(tmp_path):
    cert, key = make_cert(tmp_path)
    with open(cert) as f:
        pin = tls.parse_fingerprint(hashlib.sha256(
            ssl.PEM_cert_to_DER_cert(f.read())).hexdigest())
    client, server, s_in, s_out, _ = tls_pair(
        tmp_path, lambda c: tls.make_context(None, pin), fingerprint=pin,
        name='another.name.example', cert_key=(cert, key))
    run_handshake(client, server, s_in, s_out)
    assert client.ready


def test_silent_listener_fails_the_dial_within_5_s(mesh):
    """A host that accepts TCP and never answers the upgrade (a tarpit,
    a wrong service): the dial gives up after 5 s and the host printer
    stays on time."""
    mesh.runtime.install_probe()
    tarpit = socket.socket()
    tarpit.bind(('127.0.0.1', 0))
    tarpit.listen(16)
    try:
        node = mesh.add('main', "[lateness_probe]\n[router]\nname: main\n"
                        "[router afc]\nurl: ws://127.0.0.1:%d/klippysocket\n"
                        % (tarpit.getsockname()[1],))
        node.start()
        node.wait_ready()
        wait_until(lambda: 'no answer within 5 s' in node.router_status()[
            'peers']['afc']['last_error'], 10.)
        late = node.query({'lateness_probe': None})['lateness_probe']
        assert late['max'] < .1, late
    finally:
        tarpit.close()


def test_wrong_path_on_a_real_moonraker_says_so(mesh):
    if not Moonraker.available():
        pytest.skip("moonraker not installed")
    main = mesh.add('main', '')
    mr = Moonraker(main)
    main.write_config("[router]\nname: main\n[router afc]\n"
                      "url: ws://127.0.0.1:%d/no/such/path\n" % (mr.port,))
    main.start()
    main.wait_ready()
    try:
        mr.start()
        wait_until(lambda: 'HTTP 404' in main.router_status()['peers'][
            'afc']['last_error'], 10.)
    finally:
        mr.stop()


@needs_wsproto
def test_a_frame_sent_after_moonrakers_close_fails_as_the_link_does():
    """Between Moonraker's close and the deferred close, a request must
    fail like one on a closed link (TransportError, which the link turns
    into the request's error), never raise anything else into the G-code
    command that sent it."""
    from wsproto.events import CloseConnection
    from router.link.transport import TransportError
    client = websocket.WsClient('h:1', '/klippysocket', [], 1000)
    server = server_side()
    handshake(client, server)
    client.receive(server.send(CloseConnection(code=1001)))
    transport = object.__new__(remote.WebSocketTransport)
    transport._ws, transport._tls = client, None
    with pytest.raises(TransportError):
        transport._encode(b'{"id":1}')
