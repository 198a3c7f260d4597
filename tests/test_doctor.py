# ROUTER_DOCTOR and router/doctor on real klippy processes: meshes seeded
# with misconfigurations, each found with its fix; a healthy mesh without
# a finding; the reactor never waits for the doctor.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, re, signal, socket, threading, time
import pytest
from harness import (ApiClient, ApiError, assert_clean_log, peer_section,
                     wait_until)
from macros import MARK, REC
from router.peer.sansio.session import CLIENT_VERSION

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
NO_WSPROTO = os.path.join(DATA, 'no_wsproto')
OLD_ROUTER = os.path.join(DATA, 'old_router')   # protocol version 0.2.9
LINE_RE = re.compile(r'^// ([a-z0-9_-]+): (.*)\. Fix: (.*)$')


def doctor(node, timeout=None):
    """ROUTER_DOCTOR's console text, parsed: (header, [(peer, problem,
    fix)]). Every line of it is one finding, in the documented form."""
    client = node.client
    start = len(client.output)
    node.gcode('ROUTER_DOCTOR' + (' TIMEOUT=%s' % (timeout,)
                                  if timeout else ''), timeout=30.)
    # The output comes before the reply, on the same connection
    texts = [l for l in list(client.output)[start:]
             if l.startswith('// Router doctor:')]
    assert len(texts) == 1, texts
    lines = texts[0].split('\n')
    found = []
    for line in lines[1:]:
        m = LINE_RE.match(line)
        assert m, "not a finding line: %r" % (line,)
        found.append(m.groups())
    return lines[0], found


def endpoint(node, **params):
    with ApiClient(node.sock) as c:
        return c.request('router/doctor', params, timeout=30.)['findings']


def kinds(findings):
    return sorted((f['peer'], f['kind']) for f in findings)


def by_kind(findings):
    return {(f['peer'], f['kind']): f for f in findings}


def check_both(node, expect):
    """The endpoint finds exactly expect ({(peer, kind)}), and the console
    prints the same findings, one line each; returns them by kind."""
    findings = endpoint(node)
    assert kinds(findings) == sorted(expect), findings
    header, lines = doctor(node)
    if expect:
        assert header == '// Router doctor: %d finding(s)' % (len(expect),)
    else:
        assert header == '// Router doctor: no problems found'
    assert sorted(lines) == sorted((f['peer'], f['problem'], f['fix'])
                                   for f in findings)
    return by_kind(findings)


def stale_socket(path):
    """A socket file nobody listens at (a klippy that was killed)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()


MAIN_EXTRA = r"""
[gcode_macro LIGHTS]
gcode:
  ROUTER_GCODE_SCRIPT TARGET=led SCRIPT=M115

[gcode_macro LOST]
gcode:
  ROUTER_GCODE_SCRIPT TARGET=nowhere SCRIPT=M115
"""

LED_EXTRA = r"""
[gcode_macro BACK]
gcode:
  ROUTER_GCODE_SCRIPT TARGET=main SCRIPT=M115
"""


def build_broken(mesh):
    """main, whose config and peers hold a dozen kinds of mistakes."""
    wd = mesh.workdir
    main_peers = {
        'led': "allow: query, subscribe, events\nsubscribe: print_stats:"
               "state, no_such_object, print_stats:no_such_field\n"}
    main = mesh.add_router_node('main', ['led', 'afc', 'far'], '', main_peers)
    with open(main.cfg, 'a') as f:
        f.write(peer_section('ghost', os.path.join(wd, 'nodir', 'api.sock')))
        f.write(peer_section('stale', os.path.join(wd, 'stale', 'api.sock')))
        f.write(peer_section('later', os.path.join(wd, 'later', 'api.sock')))
        f.write(peer_section('dead', os.path.join(wd, 'dead', 'api.sock')))
        f.write(peer_section('heater', mesh.sock('bed')))
        f.write(MAIN_EXTRA)
    os.makedirs(os.path.join(wd, 'stale'))
    with open(os.path.join(wd, 'stale', 'api.sock'), 'w') as f:
        f.write('not a socket\n')
    os.makedirs(os.path.join(wd, 'later'))
    stale_socket(os.path.join(wd, 'dead', 'api.sock'))
    # led: another mesh; refuses main's G-code, and wants to send it some
    mesh.add('led', "[router]\nname: led\nmesh: other\n" + peer_section(
        'main', mesh.sock('main'), "allow: query, subscribe\n") + LED_EXTRA)
    mesh.add('afc', "[router]\nname: afc\n")             # lists nobody
    mesh.add_router_node('stranger', ['main'])           # main: not listed
    bed = mesh.add_router_node('bed', ['main'])          # dialed as heater
    bed.pythonpath = [OLD_ROUTER]
    far = mesh.add('far', "[router]\nname: far\n" + peer_section(
        'main', mesh.sock('main')) + "[router afar]\n"
        "url: ws://10.9.9.9:7125/klippysocket\n")
    far.pythonpath = [NO_WSPROTO]
    return main


def test_doctor_finds_each_misconfiguration_with_its_fix(mesh):
    main = build_broken(mesh)
    mesh.start('main', 'led', 'afc', 'stranger', 'bed')
    far = mesh['far'].start()
    far.wait_state('error')
    def settled():
        st = main.router_status()['peers']
        return all(st[n]['connected'] for n in ('led', 'afc', 'heater',
                                                'far')) and st['led']['ready']
    wait_until(settled, 10., what="main's links up")
    wait_until(lambda: {'stranger', 'bed'} <= {
        f['peer'] for f in endpoint(main)}, 10., what="stranger and bed"
        " calling main")
    main_sock, wd = mesh.sock('main'), mesh.workdir
    found = check_both(main, {
        ('main', 'unknown_target'), ('afc', 'not_listed_there'),
        ('dead', 'not_listening'), ('far', 'remote_packages'),
        ('ghost', 'socket_dir_missing'), ('heater', 'name_mismatch'),
        ('heater', 'version_mismatch'), ('later', 'no_socket'),
        ('led', 'mesh_mismatch'), ('led', 'unknown_object'),
        ('led', 'unknown_field'), ('led', 'refused_there'),
        ('led', 'refused_here'), ('stale', 'not_a_socket'),
        ('stranger', 'not_listed_here'),
        # bed calls main by its own name, which main does not list
        ('bed', 'not_listed_here')})
    def fix(peer, kind):
        return found[(peer, kind)]['fix']
    def problem(peer, kind):
        return found[(peer, kind)]['problem']
    assert fix('afc', 'not_listed_there') == (
        "add [router main] with socket: %s to the config of 'afc'"
        % (main_sock,))
    assert fix('stranger', 'not_listed_here').startswith(
        "add [router stranger] (its socket: or url:) to this config")
    assert 'TARGET=nowhere' in problem('main', 'unknown_target')
    assert '[gcode_macro LOST] gcode' in problem('main', 'unknown_target')
    assert fix('main', 'unknown_target') == (
        "correct the TARGET, or add [router nowhere] to this config")
    assert problem('ghost', 'socket_dir_missing') == (
        "the folder of its socket, %s, does not exist"
        % (os.path.join(wd, 'nodir'),))
    assert fix('ghost', 'socket_dir_missing').startswith(
        "correct socket: in [router ghost]")
    assert 'not a socket' in problem('stale', 'not_a_socket')
    assert 'must be the API socket' in fix('stale', 'not_a_socket')
    assert fix('later', 'no_socket').startswith(
        "start the Klipper of 'later' (klippy with -a %s)"
        % (os.path.join(wd, 'later', 'api.sock'),))
    assert fix('dead', 'not_listening').startswith(
        "start the Klipper of 'dead' again")
    assert problem('heater', 'name_mismatch') == (
        "dialed as 'heater', it calls itself 'bed'")
    assert fix('heater', 'name_mismatch').startswith(
        "rename [router heater] to [router bed] in this config")
    assert problem('heater', 'version_mismatch') == (
        "it runs version 0.2.9 of the router protocol, this instance %s"
        % (CLIENT_VERSION,))
    assert 'update the module on both' in fix('heater', 'version_mismatch')
    assert problem('led', 'mesh_mismatch') == (
        "it is in mesh 'other', this instance in 'default'")
    assert 'one mesh: in the [router] section of both' in fix(
        'led', 'mesh_mismatch')
    assert problem('led', 'unknown_object') == (
        "subscribe: of [router led] follows 'no_such_object', an object"
        " 'led' does not have")
    assert 'ROUTER_OBJECTS_LIST TARGET=led' in fix('led', 'unknown_object')
    assert 'print_stats:no_such_field' in problem('led', 'unknown_field')
    assert problem('led', 'refused_there') == (
        "[gcode_macro LIGHTS] gcode needs gcode on 'led', which does not"
        " accept gcode from 'main'")
    assert fix('led', 'refused_there') == (
        "add gcode to allow: in the [router main] section of the config of"
        " 'led' (now: query, subscribe)")
    assert problem('led', 'refused_here') == (
        "the config of 'led' needs gcode here ([gcode_macro BACK] gcode),"
        " which this config does not allow it")
    assert fix('led', 'refused_here') == (
        "add gcode to allow: in [router led] of this config (now: events,"
        " query, subscribe)")
    assert 'wsproto and h11' in problem('far', 'remote_packages')
    assert 'install.sh' in fix('far', 'remote_packages')
    # The other sides see their half
    found = check_both(mesh['led'], {
        ('main', 'mesh_mismatch'), ('main', 'refused_there'),
        ('main', 'refused_here')})
    assert "[gcode_macro BACK] gcode needs gcode on 'main'" in (
        found[('main', 'refused_there')]['problem'])
    found = check_both(mesh['stranger'], {('main', 'not_listed_there')})
    assert found[('main', 'not_listed_there')]['fix'] == (
        "add [router stranger] with socket: %s to the config of 'main'"
        % (mesh.sock('stranger'),))
    # far is in error (its url: section), and still answers the doctor
    found = check_both(far, {('far', 'remote_packages')})
    assert 'pip install wsproto h11' in found[('far', 'remote_packages')][
        'fix']
    # A peer's Klipper shut down: said so, with how to restart it
    with ApiClient(mesh['afc'].sock) as c:
        c.request('emergency_stop', {})
    mesh['afc'].wait_state('shutdown')
    wait_until(lambda: main.router_status()['peers']['afc']['state']
               == 'shutdown', 5., what="afc shut down, seen by main")
    found = by_kind(endpoint(main))
    assert found[('afc', 'klipper_error')]['problem'].startswith(
        "its Klipper is in shutdown: ")
    assert 'ROUTER_GCODE_SCRIPT TARGET=afc SCRIPT=FIRMWARE_RESTART' in (
        found[('afc', 'klipper_error')]['fix'])
    # far's log holds its config error's traceback, nothing else of ours
    assert 'doctor failed' not in far.log_text()
    for name in ('main', 'led', 'stranger', 'bed'):
        assert_clean_log(mesh[name])
    for name in ('main', 'led', 'stranger', 'bed'):
        assert mesh[name].state() == 'ready'


def test_doctor_finds_two_ways_to_one_klipper_and_other_names(mesh):
    # led_again: a second path (a hard link) to led's socket; me: one to
    # main's own socket. Made once the sockets exist.
    again = os.path.join(mesh.workdir, 'led_again.sock')
    me = os.path.join(mesh.workdir, 'me.sock')
    main = mesh.add_router_node('main', ['led', 'pal'], peer_section(
        'led_again', again) + peer_section('me', me))
    mesh.add_router_node('led', ['main'])
    # pal calls main 'boss' (and lets unlisted instances read it)
    pal = mesh.add('pal', "[router]\nname: pal\nallow_unlisted: query\n"
                   + peer_section('boss', mesh.sock('main')))
    mesh.start('led', 'pal')
    os.link(mesh.sock('led'), again)
    mesh.start('main')
    os.link(mesh.sock('main'), me)
    wait_until(lambda: all(p['ready'] for p in main.router_status()[
        'peers'].values()), 10., what="main's links ready")
    found = check_both(main, {('me', 'peer_is_this_instance'),
                              ('led_again', 'same_klipper'),
                              ('led_again', 'name_mismatch'),
                              ('pal', 'called_otherwise')})
    assert found[('pal', 'called_otherwise')]['problem'] == (
        "'pal' lists this instance as 'boss'")
    assert found[('pal', 'called_otherwise')]['fix'] == (
        "rename [router boss] to [router main] in the config of 'pal'")
    assert found[('me', 'peer_is_this_instance')]['problem'] == (
        "%s reaches this instance's own Klipper" % (me,))
    assert found[('me', 'peer_is_this_instance')]['fix'] == (
        "remove [router me] from this config")
    assert found[('led_again', 'same_klipper')]['fix'] == (
        "keep one of [router led] and [router led_again]")
    # ... and pal sees the same mistake from its side
    found = check_both(pal, {('boss', 'name_mismatch')})
    assert found[('boss', 'name_mismatch')]['fix'].startswith(
        "rename [router boss] to [router main] in this config")
    for node in (main, mesh['led'], pal):
        assert node.state() == 'ready'
        assert_clean_log(node)


HEALTHY = MARK + REC + r"""
[gcode_macro LIGHTS_ON]
gcode:
  ROUTER_GCODE_SCRIPT TARGET=led SCRIPT="MARK VALUE=1"
  ROUTER_OBJECTS_QUERY TARGET=afc OBJECTS=print_stats:state
  ROUTER_EVENT_TRIGGER EVENT=lights

[router event lights]
gcode: REC
"""

PLAIN = "[gcode_macro HELLO]\ngcode:\n  M115\n"


def build_healthy(mesh):
    names = ('main', 'led', 'afc')
    for name in names:
        others = [n for n in names if n != name]
        extra = {p: "subscribe: print_stats:state|filename, webhooks:state\n"
                    "on_update: REC\n"
                    "on_connect: ROUTER_GCODE_SCRIPT TARGET=%s SCRIPT="
                    "\"MARK VALUE=2\"\n" % (p,) for p in others}
        listed = others + (['plain'] if name == 'main' else [])
        if name == 'main':
            extra['plain'] = "subscribe: gcode_macro HELLO\n"
        mesh.add_router_node(name, listed, HEALTHY, extra)
    mesh.add('plain', PLAIN + MARK)
    return names


def test_healthy_mesh_has_no_findings_and_doctor_never_blocks(mesh):
    names = build_healthy(mesh)
    mesh.start()
    mesh.wait_links()
    main = mesh['main']
    for name in names:
        check_both(mesh[name], set())
    # A subscription added by command is checked too. One to an object
    # the peer lacks is refused while the peer is ready, so it is made
    # while led is down (taken, for when it is ready)
    mesh['led'].stop()
    wait_until(lambda: not main.router_status()['peers']['led']['ready'],
               10.)
    main.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=led OBJECTS="print_stats:'
               'state, heater_generic chamber" CALLBACK=MARK')
    mesh.start('led')
    mesh.wait_links()
    found = by_kind(endpoint(main))
    assert list(found) == [('led', 'unknown_object')]
    assert found[('led', 'unknown_object')]['problem'] == (
        "ROUTER_OBJECTS_SUBSCRIBE CALLBACK=MARK follows 'heater_generic"
        " chamber', an object 'led' does not have")
    main.gcode('ROUTER_OBJECTS_UNSUBSCRIBE TARGET=led CALLBACK=MARK')
    assert endpoint(main) == []
    # A peer that stops answering: the doctor waits for it at most its
    # TIMEOUT, and main answers everyone meanwhile
    led = mesh['led']
    led.proc.send_signal(signal.SIGSTOP)
    try:
        result = {}
        def run():
            t0 = time.monotonic()
            result['found'] = doctor(main, timeout=2)
            result['took'] = time.monotonic() - t0
        thread = threading.Thread(target=run)
        thread.start()
        slowest = 0.
        with ApiClient(main.sock) as c:
            while thread.is_alive():
                t0 = time.monotonic()
                c.request('info', {}, timeout=5.)
                slowest = max(slowest, time.monotonic() - t0)
                time.sleep(.05)
        thread.join()
    finally:
        led.proc.send_signal(signal.SIGCONT)
    assert slowest < .5, slowest
    assert result['took'] < 5., result
    header, lines = result['found']
    assert [(peer, problem.split(',')[0]) for peer, problem, fix in lines
            ] in ([('led', 'ready')], [('led', 'connected')]), lines
    mesh.wait_links()
    for name in names:
        check_both(mesh[name], set())
        assert_clean_log(mesh[name])


def test_doctor_bad_input_and_who_may_ask(mesh):
    mesh.add_router_node('main', ['led'], '', {'led': "allow: gcode\n"})
    mesh.add_router_node('led', ['main'])
    mesh.start()
    mesh.wait_links()
    main = mesh['main']
    for bad in ('0', 'abc', 'nan', '1e9'):
        with pytest.raises(ApiError) as e:
            main.gcode('ROUTER_DOCTOR TIMEOUT=%s' % (bad,))
        assert 'TIMEOUT must be a number of seconds' in str(e.value)
    for bad in ('abc', True, None, -1, [1]):
        with pytest.raises(ApiError) as e:
            endpoint(main, timeout=bad)
        assert 'timeout must be a number of seconds' in str(e.value)
    assert endpoint(main, timeout=3) == []
    with ApiClient(main.sock) as c:
        # An instance that main lets do G-code only: no doctor for it
        c.request('router/info', {'name': 'led'})
        with pytest.raises(ApiError) as e:
            c.request('router/doctor', {})
        assert "'main' does not accept query from 'led'" in str(e.value)
    with ApiClient(main.sock) as c:
        c.request('router/info', {'name': 'nobody'})
        with pytest.raises(ApiError) as e:
            c.request('router/doctor', {})
        assert "'main' does not know instance 'nobody'" in str(e.value)
    assert main.state() == 'ready'
    assert_clean_log(main)


def test_doctor_on_an_instance_without_api_socket(mesh):
    # klippy without -a: no peer can reach it. Asked on its pty.
    import select, subprocess
    from harness import MCU_DICT
    node = mesh.add('solo', "[router]\nname: solo\n")
    env = None
    if node.runtime.pythonpath:
        env = dict(os.environ, PYTHONPATH=node.runtime.pythonpath)
    node.proc = subprocess.Popen(
        node.runtime.command + [node.cfg, '-o', '/dev/null', '-d', MCU_DICT,
                                '-I', node.pty, '-l', node.log],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, cwd=node.dir, env=env)
    wait_until(lambda: os.path.exists(node.pty), 20., what="solo's pty")
    fd = os.open(node.pty, os.O_RDWR | os.O_NOCTTY)
    try:
        # Asked again until it answers (its G-code input may not be read
        # yet at first)
        out, deadline = b'', time.monotonic() + 20.
        def answered():
            return b'Fix:' in out and out.endswith(b'\n')
        while not answered() and time.monotonic() < deadline:
            os.write(fd, b'ROUTER_DOCTOR\n')
            until = time.monotonic() + 1.
            while not answered() and time.monotonic() < until:
                if select.select([fd], [], [], .1)[0]:
                    out += os.read(fd, 65536)
    finally:
        os.close(fd)
    text = out.decode(errors='replace')
    assert '// Router doctor: 1 finding(s)' in text, text
    assert ("// solo: this klippy runs without an API socket (-a): no peer"
            " can reach it. Fix: start klippy with -a <path>") in text, text
    assert node.alive()


def test_shared_mesh_file_has_no_findings(mesh):
    # One file that both include: each skips its own section, whose hook
    # (run by the other when it connects) targets the instance it names
    shared = os.path.join(mesh.workdir, 'mesh.cfg')
    with open(shared, 'w') as f:
        for name in ('main', 'led'):
            f.write(peer_section(name, mesh.sock(name), (
                "allow: gcode, query, subscribe\n"
                "subscribe: print_stats:state\n"
                "on_connect: ROUTER_GCODE_SCRIPT TARGET=%s SCRIPT=\"MARK"
                " VALUE=1\"\n" % (name,))))
    for name in ('main', 'led'):
        mesh.add(name, "[router]\nname: %s\n[include %s]\n" % (name, shared)
                 + MARK)
    mesh.start()
    mesh.wait_links()
    for name in ('main', 'led'):
        check_both(mesh[name], set())
        assert_clean_log(mesh[name])
