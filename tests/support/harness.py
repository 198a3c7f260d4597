# Starts real klippy processes in file-output mode and talks to their API
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import contextlib, json, os, re, shutil, signal, socket, subprocess, sys
import tempfile
import threading, time

HERE = os.path.dirname(os.path.abspath(__file__))   # tests/support
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
MCU_DICT = os.path.join(TESTS, 'data', 'mcu.dict')


class ApiError(Exception):
    pass


class Runtime:
    """Which Klipper runs: the PyPI package in this venv, or a checkout
    named by KLIPPER_PATH (run with KLIPPY_PYTHON)."""
    def __init__(self):
        path = os.environ.get('KLIPPER_PATH')
        if path:
            self.checkout = os.path.abspath(os.path.expanduser(path))
            self.python = os.environ.get('KLIPPY_PYTHON') or sys.executable
            self.command = [self.python,
                            os.path.join(self.checkout, 'klippy', 'klippy.py')]
            self.install_dir = self.checkout
            self.flavor = checkout_flavor(self.checkout)
            self.pythonpath = None
        else:
            import klippy
            self.checkout = None
            self.python = sys.executable
            self.command = [self.python, '-m', 'klippy.klippy']
            # A namespace package: no __file__
            self.install_dir = os.path.abspath(list(klippy.__path__)[0])
            self.flavor = 'pypi'
            # The package predates Python 3.12: on newer Pythons a test-only
            # shim puts back what it uses that they removed
            self.pythonpath = (os.path.join(TESTS, 'py_compat')
                               if sys.version_info >= (3, 12) else None)

    def install_module(self):
        """Installs the module the way users do: install.sh."""
        subprocess.run([os.path.join(ROOT, 'install.sh'), '-r', '-k',
                        self.install_dir, '-p', self.python], check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def extras_dir(self):
        base = (os.path.join(self.checkout, 'klippy') if self.checkout
                else self.install_dir)
        plugins = os.path.join(base, 'plugins')
        return plugins if os.path.isdir(plugins) else os.path.join(
            base, 'extras')

    def install_probe(self):
        """The test-only [lateness_probe] module, linked like ours."""
        self.install_test_module('lateness_probe')

    def install_test_module(self, name):
        """A test-only module of tests/data, linked like ours."""
        dest = os.path.join(self.extras_dir(), name + '.py')
        src = os.path.join(TESTS, 'data', name + '.py')
        if os.path.realpath(dest) != src:
            if os.path.lexists(dest):
                os.unlink(dest)
            os.symlink(src, dest)

    def config_prelude(self):
        if self.flavor == 'kalico':
            return "[telemetry]\nenabled: False\n\n"
        return ""

    def printer_options(self):
        """Options of [printer] this flavor needs to start: the U1 fork's
        toolhead reads the tool counts of its four-head printer and
        stops at start-up without them (one tool: kinematics none has
        no extruder)."""
        if self.flavor == 'u1':
            return ("max_logical_extruder_num: 1\n"
                    "max_physical_extruder_num: 1\n")
        return ""


def checkout_flavor(checkout):
    """'kalico' (its extras are in klippy/plugins), 'u1' (Snapmaker's U1
    fork: its toolhead reads max_logical_extruder_num) or 'mainline'.
    Known by what the checkout holds, whatever its folder is named."""
    klippy = os.path.join(checkout, 'klippy')
    if os.path.isdir(os.path.join(klippy, 'plugins')):
        return 'kalico'
    try:
        with open(os.path.join(klippy, 'toolhead.py')) as f:
            if 'max_logical_extruder_num' in f.read():
                return 'u1'
    except OSError:
        pass
    return 'mainline'


BASE_CONFIG = """
[mcu]
serial: /dev/null

[printer]
kinematics: none
max_velocity: 100
max_accel: 100
{printer_options}
[virtual_sdcard]
path: {gcodes}

[print_stats]
[pause_resume]
[display_status]
[respond]
"""


class Klippy:
    """One klippy process with its own config, socket, pty and log."""
    def __init__(self, runtime, workdir, name, config):
        self.runtime = runtime
        self.name = name
        self.dir = os.path.join(workdir, name)
        os.makedirs(os.path.join(self.dir, 'gcodes'), exist_ok=True)
        self.sock = os.path.join(self.dir, 'api.sock')
        self.pty = os.path.join(self.dir, 'pty')
        self.log = os.path.join(self.dir, 'klippy.log')
        self.cfg = os.path.join(self.dir, 'printer.cfg')
        self.gcodes = os.path.join(self.dir, 'gcodes')
        self.write_config(config)
        self.proc = None
        self._client = None
        self.prefix = []   # e.g. ip netns exec NAME: another "host"
        self.pythonpath = []   # directories put first on klippy's path

    def write_config(self, config):
        with open(self.cfg, 'w') as f:
            f.write(self.runtime.config_prelude())
            f.write(BASE_CONFIG.format(
                gcodes=self.gcodes,
                printer_options=self.runtime.printer_options()))
            f.write(config)

    def start(self):
        out = open(os.path.join(self.dir, 'stdout.log'), 'ab')
        env = None
        paths = self.pythonpath + [self.runtime.pythonpath]
        if any(paths):
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [
                *paths, os.environ.get('PYTHONPATH')])))
        self.proc = subprocess.Popen(
            self.prefix + self.runtime.command + [
                self.cfg, '-o', '/dev/null', '-d', MCU_DICT, '-a', self.sock,
                '-I', self.pty, '-l', self.log],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.dir, env=env)
        out.close()
        self._client = None
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def info(self, timeout=2.):
        with ApiClient(self.sock, timeout=timeout) as c:
            return c.request('info', {}, timeout=timeout)

    def state(self):
        try:
            return self.info()['state']
        except (OSError, ApiError, TimeoutError):
            return None

    def wait_state(self, want='ready', timeout=20.):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError("%s exited (rc %s); log tail:\n%s" % (
                    self.name, self.proc.returncode, self.log_tail()))
            last = self.state()
            if last == want:
                return time.monotonic()
            time.sleep(.05)
        raise AssertionError("%s not %s (state %s); log tail:\n%s"
                             % (self.name, want, last, self.log_tail()))

    def wait_ready(self, timeout=20.):
        return self.wait_state('ready', timeout)

    @property
    def client(self):
        """A long-lived API connection that also records G-code output."""
        if self._client is None or self._client.closed:
            self._client = ApiClient(self.sock)
            self._client.subscribe_output()
        return self._client

    def gcode(self, script, timeout=15.):
        return self.client.request('gcode/script', {'script': script},
                                   timeout=timeout)

    def query(self, objects, timeout=5.):
        res = self.client.request('objects/query', {'objects': objects},
                                  timeout=timeout)
        return res['status']

    def router_status(self):
        return self.query({'router': None})['router']

    def macro_vars(self, macro):
        return self.query({'gcode_macro ' + macro: None})[
            'gcode_macro ' + macro]

    def restart(self, firmware=False, timeout=20.):
        """RESTART (or FIRMWARE_RESTART) through the API; waits for ready."""
        old = self._client
        try:
            self.client.request('gcode/firmware_restart' if firmware
                                else 'gcode/restart', {}, timeout=5.)
        except (ApiError, OSError, TimeoutError):
            pass
        if old is not None:
            old.wait_closed(10.)
        self._client = None
        # The old socket is closed at once; wait for the new listener
        return self.wait_ready(timeout)

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.proc.wait(10)
            if self._client is not None:
                self._client.close()
            self._client = None

    def stop(self):
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            terminate(self.proc)

    def fd_count(self, kind=''):
        """Open fds, or only those whose link starts with kind
        ('socket:', 'pipe:')."""
        n = 0
        for fd in os.listdir('/proc/%d/fd' % (self.pid,)):
            try:
                target = os.readlink('/proc/%d/fd/%s' % (self.pid, fd))
            except OSError:
                continue
            n += target.startswith(kind)
        return n

    def log_text(self):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def log_tail(self, n=40):
        return '\n'.join(self.log_text().splitlines()[-n:])


def cpu_seconds(pid):
    """CPU time of all threads of a process, to the nanosecond (schedstat;
    /proc/<pid>/stat counts 10 ms ticks, too coarse for an idle klippy)."""
    total = 0
    for tid in os.listdir('/proc/%d/task' % (pid,)):
        try:
            with open('/proc/%d/task/%s/schedstat' % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def terminate(proc):
    """SIGTERM, then SIGKILL if it is still there after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def connect_unix(path, timeout):
    """Klipper listens with a backlog of one: while instances dial each
    other (discovery), a connect may find it full (EAGAIN); any client,
    Moonraker too, tries again."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(.01)
            continue
        sock.settimeout(None)
        return sock


class ApiClient:
    """Blocking client of klippy's API socket, for tests only."""
    def __init__(self, path, timeout=5.):
        self.sock = connect_unix(path, timeout)
        self.closed = False
        self._lock = threading.Condition()
        self._next_id = 1
        self._replies = {}
        self.output = []
        self.pushes = []
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()

    def _read_loop(self):
        buf = b''
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                buf += data
                parts = buf.split(b'\x03')
                buf = parts.pop()
                for part in parts:
                    msg = json.loads(part)
                    with self._lock:
                        if 'id' in msg:
                            self._replies[msg['id']] = msg
                        elif msg.get('params', {}).get('response') is not None \
                                and msg.get('method') == 'test/output':
                            self.output.append(msg['params']['response'])
                        else:
                            self.pushes.append(msg)
                        self._lock.notify_all()
        except OSError:
            pass
        finally:
            with self._lock:
                self.closed = True
                self._lock.notify_all()

    def send_raw(self, data):
        self.sock.sendall(data)

    def request(self, method, params, timeout=10.):
        with self._lock:
            req_id = self._next_id
            self._next_id += 1
        msg = json.dumps({'id': req_id, 'method': method, 'params': params})
        self.sock.sendall(msg.encode() + b'\x03')
        deadline = time.monotonic() + timeout
        with self._lock:
            while req_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no reply to %s within %s s"
                                       % (method, timeout))
                if self.closed:
                    raise ApiError("connection closed")
                self._lock.wait(left)
            reply = self._replies.pop(req_id)
        if 'error' in reply:
            raise ApiError(reply['error'].get('message', reply['error']))
        return reply['result']

    def subscribe_output(self):
        self.request('gcode/subscribe_output',
                     {'response_template': {'method': 'test/output'}})

    def wait_output(self, predicate, timeout=5.):
        """Waits for an output line matching predicate; returns it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for line in self.output:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no such output; got:\n%s"
                                         % ('\n'.join(self.output[-30:]),))
                self._lock.wait(left)

    def wait_closed(self, timeout):
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self.closed and time.monotonic() < deadline:
                self._lock.wait(.1)
        return self.closed


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100. * (len(values)
                                                              - 1))))]


def wait_until(predicate, timeout=10., interval=.02, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def flood(mesh, names, batch, seconds, check=None, timeout=30.):
    """Sends batch (G-code lines) to each named instance at full speed,
    one client thread each, for seconds; check() runs every second.
    Returns how many batches were refused (a full queue refuses; the rest
    waits)."""
    stop = threading.Event()
    refused = [0]
    def drive(name):
        client = ApiClient(mesh[name].sock)
        while not stop.is_set():
            try:
                client.request('gcode/script', {'script': batch}, timeout)
            except ApiError:
                refused[0] += 1
                time.sleep(.01)
        client.close()
    threads = [threading.Thread(target=drive, args=(n,)) for n in names]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    try:
        while time.monotonic() - t0 < seconds:
            if check is not None:
                check()
            time.sleep(1.)
    finally:
        stop.set()
        for t in threads:
            t.join(2 * timeout)
    return refused[0]


def peer_section(name, sock, extra=''):
    return "\n[router %s]\nsocket: %s\n%s\n" % (name, sock, extra)


class Mesh:
    """A set of instances in one short temp dir (socket paths are limited
    to 108 bytes, so no deep pytest tmp_path). Every mesh that is open is
    in Mesh.open, so a failing test shows the logs of all of them."""
    open = set()

    def __init__(self, runtime):
        self.runtime = runtime
        self.workdir = tempfile.mkdtemp(prefix='kr-', dir='/tmp')
        self.nodes = {}
        # (instance, peer) links a test makes one-sided on purpose: the
        # peer does not list the instance, so it is connected, not ready
        self.one_sided = set()
        Mesh.open.add(self)

    def sock(self, name):
        return os.path.join(self.workdir, name, 'api.sock')

    def add(self, name, config):
        node = Klippy(self.runtime, self.workdir, name, config)
        self.nodes[name] = node
        return node

    def add_router_node(self, name, peers, extra='', peer_extra=None):
        """An instance with [router] and one [router P] per peer name."""
        peer_extra = peer_extra or {}
        text = "\n[router]\nname: %s\n" % (name,)
        for p in peers:
            text += peer_section(p, self.sock(p), peer_extra.get(p, ''))
        return self.add(name, text + extra)

    def add_full_mesh(self, names, extra=''):
        """Router instances that each list all the others; returns self."""
        for name in names:
            self.add_router_node(name, [n for n in names if n != name],
                                 extra)
        return self

    def add_shared_file(self, names, listed=()):
        """Router instances that each include one mesh file listing all
        of them and the instances in listed (a Klipper without the module,
        say); returns the file's path."""
        shared = os.path.join(self.workdir, 'mesh.cfg')
        with open(shared, 'w') as f:
            for name in tuple(names) + tuple(listed):
                f.write("[router %s]\nsocket: %s\n\n" % (name,
                                                          self.sock(name)))
        for name in names:
            self.add(name, "[router]\nname: %s\n[include %s]\n" % (
                name, shared))
        return shared

    def __getitem__(self, name):
        return self.nodes[name]

    def start(self, *names):
        for name in names or list(self.nodes):
            self.nodes[name].start()
        for name in names or list(self.nodes):
            self.nodes[name].wait_ready()

    def wait_links(self, timeout=10.):
        """Every router instance sees every configured peer ready."""
        def linked(name, peer, st):
            if (name, peer) in self.one_sided:
                return st['connected'] and not st['ready']
            return st['ready']
        def all_ready():
            for name, node in self.nodes.items():
                if not node.alive():
                    continue
                try:
                    st = node.router_status()
                except Exception:
                    return False
                if st == {}:
                    continue   # an instance without [router]
                if not all(linked(name, peer, p)
                           for peer, p in st['peers'].items()):
                    return False
            return True
        wait_until(all_ready, timeout, what="all links ready")

    @contextlib.contextmanager
    def running(self):
        """Started, links ready, each node's API client open; closed on
        exit even when the start fails (no klippy left behind)."""
        try:
            self.start()
            self.wait_links()
            for node in self.nodes.values():
                node.client
            yield self
        finally:
            self.close()

    def close(self):
        Mesh.open.discard(self)
        for node in self.nodes.values():
            node.stop()
        if not os.environ.get("KEEP_MESH"): shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tails(self, n=60):
        return ''.join("\n===== log of %s =====\n%s\n" % (
            node.name, node.log_tail(n)) for node in self.nodes.values())


MOONRAKER = os.environ.get('MOONRAKER_BIN') or os.path.join(
    ROOT, '.venv', 'moonraker', 'bin', 'moonraker')

MOONRAKER_CONFIG = """
[server]
host: {host}
port: {port}
ssl_port: {ssl_port}
klippy_uds_address: {sock}

[authorization]
trusted_clients:
  {trusted}

[machine]
provider: none
validate_service: False
"""


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Moonraker:
    """The PyPI moonraker package in front of one klippy: on 127.0.0.1,
    or on host (an address of a network namespace, entered with prefix),
    trusting the clients in trusted and everyone with its API key."""
    def __init__(self, node, host='127.0.0.1', prefix=(),
                 trusted='127.0.0.1', port=None):
        self.node = node
        self.host = host
        self.prefix = list(prefix)
        self.dir = os.path.join(node.dir, 'moonraker')
        for sub in ('config', 'logs', 'gcodes', 'database'):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.port = port or free_port()
        # TLS is served there only once certs/moonraker.{cert,key} exist
        self.ssl_port = free_port()
        self.cfg = os.path.join(self.dir, 'config', 'moonraker.conf')
        with open(self.cfg, 'w') as f:
            f.write(MOONRAKER_CONFIG.format(
                host=host, port=self.port, ssl_port=self.ssl_port,
                sock=node.sock, trusted=trusted))
        self.log = os.path.join(self.dir, 'logs', 'moonraker.log')
        self.proc = None

    def make_certificate(self):
        """A self-signed certificate for its address (TLS on ssl_port
        from its next start); returns the certificate's path."""
        certs = os.path.join(self.dir, 'certs')
        os.makedirs(certs, exist_ok=True)
        cert = os.path.join(certs, 'moonraker.cert')
        subprocess.run(
            ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
             '-keyout', os.path.join(certs, 'moonraker.key'), '-out', cert,
             '-days', '2', '-subj', '/CN=%s' % (self.host,), '-addext',
             'subjectAltName=IP:%s' % (self.host,)], check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return cert

    @staticmethod
    def available():
        return os.path.exists(MOONRAKER)

    def start(self, timeout=30., wait=True):
        out = open(os.path.join(self.dir, 'stdout.log'), 'ab')
        self.proc = subprocess.Popen(
            self.prefix + [MOONRAKER, '-d', self.dir, '-c', self.cfg, '-l',
                           self.log],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30.):
        def klippy_ready():
            try:
                return self.get('/server/info')['result'][
                    'klippy_state'] == 'ready'
            except Exception:
                return False
        wait_until(klippy_ready, timeout, interval=.2,
                   what="moonraker with klippy ready")

    def url(self, path, scheme='http'):
        return '%s://%s:%d%s' % (scheme, self.host, self.port, path)

    def api_key(self, timeout=20.):
        """Read from its database (read-only): asking for it over HTTP
        needs a trusted client. Moonraker makes it at its first start."""
        import sqlite3
        db = os.path.join(self.dir, 'database', 'moonraker-sql.db')
        found = []
        def read():
            try:
                con = sqlite3.connect('file:%s?mode=ro' % (db,), uri=True)
                try:
                    row = con.execute(
                        "SELECT password FROM authorized_users WHERE"
                        " username = '_API_KEY_USER_'").fetchone()
                finally:
                    con.close()
            except sqlite3.Error:
                return False
            found[:] = row or []
            return bool(found)
        wait_until(read, timeout, interval=.1, what="moonraker's API key")
        return found[0]

    def get(self, path):
        import urllib.request
        req = urllib.request.Request(self.url(path))
        if self.host != '127.0.0.1':
            # From another "host": no trusted client, the key then
            req.add_header('X-Api-Key', self.api_key())
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def post(self, path, params):
        """Returns (http status, decoded body)."""
        import urllib.request, urllib.error, urllib.parse
        req = urllib.request.Request(
            self.url(path) + '?' + urllib.parse.urlencode(params),
            data=b'', method='POST')
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b'{}')

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc)


def output_json(node, prefix):
    """The JSON objects of node's console lines '// <prefix> {...}', as
    printed by test macros with action_respond_info(prefix ~ params|tojson)."""
    head = '// %s {' % (prefix,)
    return [json.loads(line[len(head) - 1:]) for line in list(
        node.client.output) if line.startswith(head)]


# Klipper logs this once when nobody reads its pty and the buffer is full
# (thousands of report lines): the module's frames show only as the
# context of the write being reported; it is no failure of the module.
PTY_FULL_RE = re.compile(
    r'Write g-code response\nTraceback \(most recent call last\):\n'
    r'.*?\nBlockingIOError: [^\n]*\n', re.S)
BAD_LOG = ('unhandled exception', 'internal error', 'repeat unhandled')
ROUTER_FRAME_RE = re.compile(r'File "[^"]*/router/[^"]*"')


def log_problems(text):
    """What in a klippy log says the module failed or klippy took a
    shutdown or crash path: the bad phrases (any case) and traceback frames
    inside the module (Klipper logs tracebacks of its own, e.g. for
    action_raise_error)."""
    text = PTY_FULL_RE.sub('', text)
    low = text.lower()
    found = [p for p in BAD_LOG if p in low]
    found += ROUTER_FRAME_RE.findall(text)[:3]
    return found


def log_excerpt(text, problems):
    """The log around the first problem."""
    low = text.lower()
    pos = min([low.find(p.lower()) for p in problems
               if low.find(p.lower()) >= 0] or [len(text)])
    start = text.rfind('Traceback', 0, pos)
    start = pos - 1500 if start < 0 or pos - start > 5000 else start - 500
    return text[max(0, start):pos + 1500]


def assert_clean_log(node, text=None):
    text = node.log_text() if text is None else text
    problems = log_problems(text)
    assert not problems, "%s: %s\n%s" % (node.name, problems,
                                         log_excerpt(text, problems))
