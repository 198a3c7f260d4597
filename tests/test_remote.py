# Peers on another host, through that host's Moonraker (/klippysocket):
# real klippy and real Moonraker on a second "host", a network namespace
# with its own address on a veth pair. Skipped, saying why, where
# namespaces cannot be made (not root, no ip, a container without them).
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import hashlib, os, shutil, signal, subprocess, time
import pytest
from harness import ApiError, Mesh, Moonraker, output_json, wait_until
from macros import COMMON
import remote_host

try:
    import wsclient
except ImportError:   # no wsproto in this venv: skipped below
    wsclient = None

WHY = remote_host.why_unavailable() or (
    None if Moonraker.available() else
    "moonraker not installed (scripts/setup-venv.sh installs it when there"
    " is a Python 3.10 or newer)")
pytestmark = pytest.mark.skipif(WHY is not None, reason=WHY or '')

HOOKS = r"""
[gcode_macro HOOKS]
variable_up: 0
variable_down: 0
gcode:
  SET_GCODE_VARIABLE MACRO=HOOKS VARIABLE={params.VAR} VALUE={printer["gcode_macro HOOKS"][params.VAR] + 1}
"""

MAIN = HOOKS + r"""
[lateness_probe]

[router event ping]
gcode: REC WHO=main
"""

AFC = HOOKS + r"""
[router event pong]
gcode: REC WHO=afc

[gcode_macro CALL_MAIN]
gcode:
  {action_call_remote_method("router/gcode/script", target="main", script="MARK VALUE=" ~ params.VALUE)}
"""

# A Klipper without the module, on the far host, served by main
PLAIN = HOOKS + r"""
[gcode_macro CALL_MAIN]
gcode:
  {action_call_remote_method("router/gcode/script", target="main", script="MARK VALUE=" ~ params.VALUE)}

[gcode_macro CALL_QUERY]
gcode:
  {action_call_remote_method("router/objects/query", target="main", objects={"gcode_macro MARK": ["value"]}, gcode_callback="REC")}
"""


class Hosts:
    """main on this host, afc on the namespace "host"; each dials the
    other through the other's Moonraker, with that Moonraker's API key
    (each Moonraker trusts only its own host). main also has led (local,
    a shared mesh file with afc's remote section) and plain (far, no
    module) when asked."""
    def __init__(self, runtime, plain=False, led=False):
        runtime.install_probe()
        self.ns = remote_host.Netns()
        self.mesh = mesh = Mesh(runtime)
        self.keys, self.mr = {}, {}
        self.add('main', None)
        self.add('afc', self.ns)
        if plain:
            self.add('plain', self.ns)
        if led:
            mesh.add('led', '')
        self.urls = {name: self.url(name) for name in self.mr}

    def add(self, name, ns):
        path = os.path.join(self.mesh.workdir, name + '.key')
        open(path, 'w').close()
        self.keys[name] = path
        node = self.mesh.add(name, '')
        if ns is not None:
            node.prefix = ns.prefix
            self.mr[name] = Moonraker(node, host=ns.ip, prefix=ns.prefix)
        else:
            self.mr[name] = Moonraker(node, host=self.ns.host_ip)

    def url(self, name):
        mr = self.mr[name]
        return 'ws://%s:%d/klippysocket' % (mr.host, mr.port)

    def section(self, name, extra='', url=None):
        return ("\n[router %s]\nurl: %s\napi_key_file: %s\n"
                "on_connect: HOOKS VAR=up\non_disconnect: HOOKS VAR=down\n%s\n"
                % (name, url or self.urls[name], self.keys[name], extra))

    def configure(self, main_peers, afc_peers):
        """Default configs: main lists main_peers, afc afc_peers ({name:
        extra}); plain (if any) has no [router]."""
        self.mesh['main'].write_config("[router]\nname: main\n" + ''.join(
            self.section(n, e) for n, e in main_peers.items()) + COMMON
            + MAIN)
        self.mesh['afc'].write_config("[router]\nname: afc\n" + ''.join(
            self.section(n, e) for n, e in afc_peers.items()) + COMMON + AFC)
        if 'plain' in self.mesh.nodes:
            self.mesh['plain'].write_config(COMMON + PLAIN)
        return self

    def start(self, first=None):
        """first: an instance started (with its API client, which records
        its console) before the others."""
        # Keys first (Moonraker makes its key at its first start), so no
        # dial meets a refusal
        for name, mr in self.mr.items():
            mr.start(wait=False)
            self.write_key(name)
        if first is not None:
            self.mesh.start(first)
            self.mesh[first].client
        self.mesh.start(*[n for n in self.mesh.nodes if n != first])
        for mr in self.mr.values():
            mr.wait_ready()
        self.mesh.wait_links(20.)
        self.started = time.monotonic()
        return self

    def write_key(self, name, key=None):
        with open(self.keys[name], 'w') as f:
            f.write((key or self.mr[name].api_key()) + '\n')

    def __getitem__(self, name):
        return self.mesh[name]

    def close(self):
        for mr in self.mr.values():
            mr.stop()
        self.mesh.close()
        self.ns.close()


@pytest.fixture(scope='module')
def hosts(runtime):
    h = Hosts(runtime, plain=True, led=True)
    # main and led include one mesh file: led local, afc remote
    shared = ("\n[router main]\nsocket: %s\n[router led]\nsocket: %s\n"
              % (h.mesh.sock('main'), h.mesh.sock('led'))
              + h.section('afc', 'allow: gcode, subscribe, events'))
    h.configure({'plain': 'allow: gcode'}, {'main': ''})
    h['main'].write_config("[router]\nname: main\n" + shared + h.section(
        'plain', 'allow: gcode') + COMMON + MAIN)
    h['led'].write_config("[router]\nname: led\n" + shared + COMMON + MAIN)
    # afc lists main only: led's link to it is one-sided (events reach afc
    # through main)
    h.mesh.one_sided.add(('led', 'afc'))
    try:
        yield h.start()
    finally:
        h.close()


def recs(node, **match):
    return [r for r in output_json(node, 'REC')
            if all(r.get(k) == v for k, v in match.items())]


def hooks(node):
    v = node.macro_vars('HOOKS')
    return v['up'], v['down']


def test_gcode_both_ways_with_waits_errors_and_timeouts(hosts):
    main, afc = hosts['main'], hosts['afc']
    main.gcode('ROUTER_GCODE_SCRIPT TARGET=afc WAIT=1 SCRIPT="MARK VALUE=7"')
    assert afc.macro_vars('MARK')['value'] == 7
    afc.gcode('ROUTER_GCODE_SCRIPT TARGET=main WAIT=1 SCRIPT="MARK VALUE=8"')
    assert main.macro_vars('MARK')['value'] == 8
    with pytest.raises(ApiError) as e:
        main.gcode('ROUTER_GCODE_SCRIPT TARGET=afc WAIT=1 SCRIPT=FAIL')
    assert "deliberate failure" in str(e.value)
    # WAIT=0: run once each, in order
    count = afc.macro_vars('MARK')['count']
    for i in range(1, 31):
        main.gcode('ROUTER_GCODE_SCRIPT TARGET=afc SCRIPT="MARK VALUE=%d"'
                   % (i,))
    wait_until(lambda: afc.macro_vars('MARK')['count'] == count + 30, 10.)
    assert afc.macro_vars('MARK')['value'] == 30
    # A far klippy that does not answer (stopped): the call times out
    os.kill(afc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(ApiError) as e:
            main.gcode('ROUTER_GCODE_SCRIPT TARGET=afc WAIT=1 TIMEOUT=0.5'
                       ' SCRIPT="MARK VALUE=31"')
    finally:
        os.kill(afc.pid, signal.SIGCONT)
    assert "no reply within 0.5 s" in str(e.value)
    wait_until(lambda: afc.macro_vars('MARK')['value'] == 31, 5.)
    # Both sides see each other, with the module, in printer.router
    for a, b in (('main', 'afc'), ('afc', 'main')):
        st = hosts[a].router_status()['peers'][b]
        assert st['ready'] and st['module'], st
    assert hooks(main) == (2, 0) and hooks(afc) == (1, 0)   # afc, plain


def test_objects_and_subscriptions_exactly_once(hosts):
    main, afc = hosts['main'], hosts['afc']
    out = main.client
    main.gcode('ROUTER_OBJECTS_QUERY TARGET=afc OBJECTS="gcode_macro MARK:'
               'value"')
    out.wait_output(lambda l: l.startswith('// gcode_macro MARK: {"value"'))
    afc.gcode("MARK VALUE=100")
    n0 = len(recs(main, PRINTER='afc'))
    main.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=afc OBJECTS="gcode_macro'
               ' MARK:value" CALLBACK=REC')
    wait_until(lambda: len(recs(main, PRINTER='afc')) == n0 + 1, 5.)
    assert recs(main, PRINTER='afc')[-1]['GCODE_MACRO_MARK_VALUE'] == '100'
    # An idle printer is looked at every 0.25 s: each value held longer
    # is seen, once, in order
    for i in range(101, 111):
        afc.gcode("MARK VALUE=%d" % (i,))
        time.sleep(.3)
    wait_until(lambda: recs(main, PRINTER='afc')[-1].get(
        'GCODE_MACRO_MARK_VALUE') == '110', 5.)
    time.sleep(.5)
    got = [int(r['GCODE_MACRO_MARK_VALUE'])
           for r in recs(main, PRINTER='afc')[n0:]]
    assert got == list(range(100, 111)), got
    assert main.router_status()['peers']['afc']['objects'] == {
        'gcode_macro MARK': {'value': 110}}
    main.gcode("ROUTER_OBJECTS_UNSUBSCRIBE TARGET=afc CALLBACK=REC")
    # afc may not query main (main's section for afc leaves query out)
    with pytest.raises(ApiError) as e:
        afc.gcode('ROUTER_OBJECTS_QUERY TARGET=main OBJECTS=print_stats')
    assert "'main' does not accept query from 'afc'" in str(e.value)


def test_events_both_ways_and_through_the_mesh(hosts):
    main, afc, led = hosts['main'], hosts['afc'], hosts['led']
    main.gcode("ROUTER_EVENT_TRIGGER EVENT=pong N=1")
    wait_until(lambda: len(recs(afc, WHO='afc', N='1')) == 1, 5.)
    afc.gcode("ROUTER_EVENT_TRIGGER EVENT=ping N=2")
    # main directly, led both directly and through main: once each
    wait_until(lambda: len(recs(main, WHO='main', N='2')) == 1
               and len(recs(led, WHO='main', N='2')) == 1, 5.)
    time.sleep(.5)
    assert len(recs(afc, N='1')) == 1 and len(recs(led, N='2')) == 1
    assert len(recs(main, N='2')) == 1


def test_served_klipper_without_the_module(hosts):
    main, plain = hosts['main'], hosts['plain']
    main.gcode('ROUTER_GCODE_SCRIPT TARGET=plain WAIT=1'
               ' SCRIPT="MARK VALUE=5"')
    assert plain.macro_vars('MARK')['value'] == 5
    st = main.router_status()['peers']['plain']
    assert st['ready'] and not st['module']
    # Its macros reach main through main's remote methods on the bridge
    plain.gcode("CALL_MAIN VALUE=77")
    wait_until(lambda: main.macro_vars('MARK')['value'] == 77, 5.)
    # allow: gcode only: its query is refused, reported on main
    plain.gcode("CALL_QUERY")
    main.client.wait_output(
        lambda l: "'main' does not accept query from 'plain'" in l, 5.)


@pytest.mark.parametrize('peer', ['afc', 'plain'])
def test_script_output_and_unknown_command_over_moonraker(hosts, peer):
    """What a WAIT=1 script prints on a far instance comes back through
    its Moonraker's /klippysocket (pushed by its router, or its Klipper's
    own console feed), and an unknown command there fails the call."""
    main = hosts['main']
    n = len(main.client.output)
    main.gcode('ROUTER_GCODE_SCRIPT TARGET=%s WAIT=1 SCRIPT="M118 far'
               ' away"' % (peer,))
    assert main.client.output[n:] == ['// [%s] echo: far away' % (peer,)]
    with pytest.raises(ApiError) as e:
        main.gcode('ROUTER_GCODE_SCRIPT TARGET=%s WAIT=1 SCRIPT=NO_SUCH_CMD'
                   % (peer,))
    assert 'Unknown command:"NO_SUCH_CMD"' in str(e.value)


def test_bridge_client_without_key_or_with_a_false_name(hosts):
    mr = hosts.mr['main']
    with pytest.raises(wsclient.Refused) as e:
        wsclient.BridgeClient(mr.host, mr.port, key='0' * 32)
    assert e.value.status == 401
    c = wsclient.BridgeClient(mr.host, mr.port, key=mr.api_key())
    try:
        c.request('router/info', {'name': 'stranger'})
        with pytest.raises(RuntimeError) as e:
            c.request('router/gcode', {'script': 'MARK VALUE=666'})
        assert "does not know instance 'stranger'" in str(e.value)
    finally:
        c.close()
    assert hosts['main'].macro_vars('MARK')['value'] != 666


def test_links_outlive_moonrakers_ping_timeout(hosts):
    """Moonraker (tornado 6.5+) pings every 10 s and closes a websocket
    whose pong does not come within 10 more: links that answer stay up.
    Runs last on the module's hosts: no link went down since the start."""
    time.sleep(max(0., 25. - (time.monotonic() - hosts.started)))
    assert hooks(hosts['main']) == (2, 0)
    assert hooks(hosts['afc']) == (1, 0)
    assert both_ready(hosts)


# Failures of the path between the hosts, and of the far side
@pytest.fixture
def pair(runtime):
    h = Hosts(runtime).configure({'afc': ''}, {'main': ''})
    try:
        yield h.start()
    finally:
        h.close()


def ready_between(hosts, a, b):
    try:
        return hosts[a].router_status()['peers'][b]['ready']
    except Exception:
        return False


def both_ready(hosts):
    return ready_between(hosts, 'main', 'afc') and ready_between(
        hosts, 'afc', 'main')


def back_within(hosts, far_ready_at, limit=5.):
    """Both links ready again; how long after far_ready_at."""
    wait_until(lambda: both_ready(hosts), limit + 10., interval=.05,
               what="both links ready")
    took = time.monotonic() - far_ready_at
    assert took <= limit, "links ready %.2f s after the far side" % (took,)
    return took


def test_partition_of_30_s_heals_and_host_stays_on_time(pair, figures):
    main, afc = pair['main'], pair['afc']
    main.client.request('lateness_probe/reset', {})
    start = time.monotonic()
    pair.ns.link(False)
    # Half-open: no FIN, no RST; the silence is noticed
    wait_until(lambda: not ready_between(pair, 'main', 'afc'), 12.,
               what="main sees afc gone")
    noticed = time.monotonic() - start
    # Two things notice it, in either order: the keepalive (no answer
    # for 5 s after a ping: not responding) and the transport (no byte
    # for 6 s: the link closes, and says why)
    wait_until(lambda: 'nothing heard for 6 s' in main.router_status()[
        'peers']['afc']['last_error'], 12. - noticed,
        what="the transport closed the silent link")
    while time.monotonic() - start < 30.:
        # The host works on meanwhile: local G-code is answered
        main.gcode("MARK VALUE=1")
        time.sleep(.5)
    late = main.query({'lateness_probe': None})['lateness_probe']
    pair.ns.link(True)
    healed = time.monotonic()
    took = back_within(pair, healed)
    figures('remote partition 30 s', noticed_s=round(noticed, 2),
            back_after_heal_s=round(took, 2),
            host_lateness_p99_ms=round(late['p99'] * 1000, 2),
            host_lateness_max_ms=round(late['max'] * 1000, 2))
    assert late['max'] < .1, late
    # Hooks: one down, then one up, on each side
    time.sleep(1.)
    assert hooks(main) == (2, 1) and hooks(afc) == (2, 1)
    main.gcode('ROUTER_GCODE_SCRIPT TARGET=afc WAIT=1 SCRIPT="MARK VALUE=3"')
    assert afc.macro_vars('MARK')['value'] == 3


def test_moonraker_killed_and_restarted(pair):
    main, afc = pair['main'], pair['afc']
    mr = pair.mr['afc']
    mr.proc.kill()
    mr.proc.wait()
    wait_until(lambda: not ready_between(pair, 'main', 'afc'), 10.)
    time.sleep(2.)
    mr.start(wait=False)
    mr.wait_ready()
    back_within(pair, time.monotonic())
    time.sleep(1.)
    assert hooks(main) == (2, 1)
    main.gcode('ROUTER_GCODE_SCRIPT TARGET=afc WAIT=1 SCRIPT="MARK VALUE=4"')
    assert afc.macro_vars('MARK')['value'] == 4


def test_klippy_restarted_behind_a_live_moonraker(pair):
    main, afc = pair['main'], pair['afc']
    for i in range(3):
        afc.restart()
        back_within(pair, time.monotonic())
    time.sleep(1.)
    # One down and one up per restart; afc's own hooks ran on its fresh
    # start each time (its variables start again at 0)
    assert hooks(main) == (4, 3)
    assert hooks(afc) == (1, 0)


def test_wrong_key_is_a_clear_error_without_a_retry_storm(runtime):
    h = Hosts(runtime)
    count = os.path.join(h.mesh.workdir, 'dials')
    try:
        mr = h.mr['afc']
        host, port = h.ns.delay_proxy(mr.host, mr.port, 0, count_file=count)
        h.urls['afc'] = 'ws://%s:%d/klippysocket' % (host, port)
        h.configure({'afc': ''}, {'main': ''})
        for name, m in h.mr.items():
            m.start(wait=False)
            h.write_key(name, 'f' * 32 if name == 'afc' else None)
        h.mesh.start()
        main = h['main']
        main.gcode("ROUTER_PRINTERS_LIST")
        def listed():
            main.gcode("ROUTER_PRINTERS_LIST")
            return [l for l in main.client.output
                    if 'refused the API key' in l]
        wait_until(listed, 10.)
        # From the first refusal on (before it, Moonraker was starting:
        # the relay took dials it could not pass on), one dial per 10 s
        def dials():
            with open(count) as f:
                return int(f.read())
        first = dials()
        time.sleep(25.)
        assert dials() - first <= 3, (first, dials())
        # The right key: back at the next step
        h.write_key('afc')
        wait_until(lambda: ready_between(h, 'main', 'afc'), 15.)
    finally:
        h.close()


def test_seed_scenario_over_a_slow_lossy_link(runtime):
    """The led of config_examples/led_follows_print on the far host,
    following main through 50 ms each way and 2 % packet loss: every
    state once, in order."""
    import test_scenario
    if not remote_host.loss_available():
        pytest.skip("no nft command for packet loss (Debian: nftables;"
                    " scripts/setup-venv.sh installs it when run as root)")
    h = Hosts(runtime)
    try:
        mr = h.mr
        # Each direction through a relay that delays 50 ms, on the far
        # host's side of the lossy cable
        host, port = h.ns.delay_proxy(mr['afc'].host, mr['afc'].port, 50)
        h.urls['afc'] = 'ws://%s:%d/klippysocket' % (host, port)
        host, port = h.ns.delay_proxy(mr['main'].host, mr['main'].port, 50,
                                      inside=True)
        h.urls['main'] = 'ws://%s:%d/klippysocket' % (host, port)
        with open(os.path.join(test_scenario.EXAMPLE, 'led.cfg')) as f:
            led = f.read()
        led = led.replace('name: led', 'name: afc').replace(
            "socket: ~/printer_data/comms/klippy.sock",
            "url: %s\napi_key_file: %s" % (h.urls['main'], h.keys['main']))
        assert 'url: ' in led
        h['afc'].write_config(led)
        h['main'].write_config("[router]\nname: main\n" + h.section(
            'afc', 'allow: query, subscribe') + test_scenario.MAIN_EXTRA)
        h.ns.loss(2)
        h.start(first='afc')
        test_scenario.run_print_sequence(h['main'], h['afc'])
        assert h.ns.dropped() > 0   # the loss was real
    finally:
        h.close()


def test_tls_with_a_ca_file_or_a_pinned_certificate(runtime):
    if shutil.which('openssl') is None:
        pytest.skip("no openssl command to make a certificate (Debian:"
                    " openssl)")
    h = Hosts(runtime)
    try:
        mr = h.mr['afc']
        cert = mr.make_certificate()
        wss = 'wss://%s:%d/klippysocket' % (mr.host, mr.ssl_port)
        der = subprocess.run(['openssl', 'x509', '-in', cert, '-outform',
                              'DER'], stdout=subprocess.PIPE,
                             check=True).stdout
        pin = ':'.join('%02X' % b for b in hashlib.sha256(der).digest())
        def main_config(tls_option, url=wss):
            return ("[router]\nname: main\n" + h.section(
                'afc', tls_option, url=url) + COMMON + MAIN)
        h.configure({'afc': ''}, {'main': ''})
        h['main'].write_config(main_config('tls_ca_file: %s' % (cert,)))
        h.start()
        main, afc = h['main'], h['afc']
        main.gcode('ROUTER_GCODE_SCRIPT TARGET=afc WAIT=1'
                   ' SCRIPT="MARK VALUE=9"')
        assert afc.macro_vars('MARK')['value'] == 9
        assert "Starting secure server" in open(mr.log).read()
        plain = 'wss://%s:%d/klippysocket' % (mr.host, mr.port)
        for option, url, error in [
                ('', wss, 'certificate not trusted'),
                ('tls_fingerprint: ' + '0' * 64, wss, 'is not the pinned one'),
                # Moonraker's plain port waits for an HTTP request that a
                # TLS hello never completes
                ('tls_ca_file: ' + cert, plain, 'no answer within 5 s'),
                ('tls_fingerprint: ' + pin, wss, None)]:
            main.write_config(main_config(option, url))
            main.restart()
            if error is None:
                wait_until(lambda: ready_between(h, 'main', 'afc'), 10.)
                main.gcode('ROUTER_GCODE_SCRIPT TARGET=afc WAIT=1'
                           ' SCRIPT="MARK VALUE=10"')
                assert afc.macro_vars('MARK')['value'] == 10
                continue
            wait_until(lambda: error in main.router_status()['peers'][
                'afc']['last_error'], 12.)
            assert not ready_between(h, 'main', 'afc')
            assert main.state() == 'ready'
    finally:
        h.close()


def test_a_slow_name_server_does_not_stall_the_printer(mesh):
    """A url: with a host name, on a host whose name server never
    answers: the name is looked up off the reactor; the printer and its
    local peer carry on meanwhile."""
    mesh.runtime.install_probe()
    ns = remote_host.Netns()
    try:
        ns.slow_name_server()
        mesh.add_router_node('main', ['led'], "[lateness_probe]\n"
                             "[router ghost]\nurl: ws://ghost.example:7125/"
                             "klippysocket\n" + COMMON)
        mesh.add_router_node('led', ['main'], COMMON)
        mesh['main'].prefix = ns.prefix
        mesh.start()
        main = mesh['main']
        wait_until(lambda: main.router_status()['peers']['led']['ready'],
                   10.)
        main.client.request('lateness_probe/reset', {})
        start = time.monotonic()
        for i in range(20):
            main.gcode('ROUTER_GCODE_SCRIPT TARGET=led WAIT=1'
                       ' SCRIPT="MARK VALUE=%d"' % (i,))
            time.sleep(.1)
        # The lookup is still under way (it takes seconds), not failed
        assert 'cannot resolve' not in main.router_status()['peers'][
            'ghost']['last_error']
        late = main.query({'lateness_probe': None})['lateness_probe']
        assert late['max'] < .1, late
        wait_until(lambda: 'cannot resolve ghost.example' in
                   main.router_status()['peers']['ghost']['last_error'], 30.)
        assert time.monotonic() - start > 2.
    finally:
        mesh.close()
        ns.close()


def test_remote_afc_example(runtime):
    """config_examples/remote_afc, as written, with this test's hosts."""
    from harness import ROOT
    import test_scenario
    h = Hosts(runtime)
    try:
        example = os.path.join(ROOT, 'config_examples', 'remote_afc')
        def config(name, peer, url_was, key_was):
            with open(os.path.join(example, name + '.cfg')) as f:
                text = f.read()
            assert url_was in text and key_was in text
            return text.replace(url_was, h.urls[peer]).replace(
                key_was, h.keys[peer])
        h['main'].write_config(config(
            'main', 'afc', 'ws://afc-pi.local:7125/klippysocket',
            '~/printer_data/config/afc-moonraker.key')
            + test_scenario.MAIN_EXTRA)
        h['afc'].write_config(config(
            'afc', 'main', 'ws://printer.local:7125/klippysocket',
            '~/printer_data/config/main-moonraker.key'))
        h.start(first='afc')
        main, afc = h['main'], h['afc']
        out = main.client
        afc.client.wait_output(lambda l: l == 'echo: AFC: printer is'
                               ' standby', 5.)
        main.gcode("T1")
        assert afc.macro_vars('AFC_LOAD')['lane'] == 1
        # The runout pauses the print
        with open(os.path.join(main.gcodes, 'long.gcode'), 'w') as f:
            f.write(test_scenario.BUSY * 20)
        main.gcode("SDCARD_PRINT_FILE FILENAME=long.gcode")
        afc.client.wait_output(lambda l: l.endswith('printer is printing'),
                               5.)
        afc.gcode("AFC_RUNOUT LANE=2")
        out.wait_output(lambda l: 'runout on lane 2, pausing' in l, 5.)
        wait_until(lambda: main.query({'print_stats': ['state']})[
            'print_stats']['state'] == 'paused', 5.)
        afc.client.wait_output(lambda l: l.endswith('printer is paused'), 5.)
        # afc may not send main G-code
        with pytest.raises(ApiError) as e:
            afc.gcode('ROUTER_GCODE_SCRIPT TARGET=main SCRIPT=RESUME')
        assert "does not accept gcode from 'afc'" in str(e.value)
        # The unit going away while printing pauses the printer
        main.gcode("RESUME")
        wait_until(lambda: main.query({'print_stats': ['state']})[
            'print_stats']['state'] == 'printing', 5.)
        afc.kill()
        out.wait_output(lambda l: 'unit offline, pausing' in l, 10.)
        wait_until(lambda: main.query({'print_stats': ['state']})[
            'print_stats']['state'] == 'paused', 5.)
    finally:
        h.close()
