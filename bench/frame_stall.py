# How long one hostile peer can stall a host's reactor (issue 10, items 5
# and 6), against a real klippy `main`:
#   1. frames: a fake peer (a thread of this script, a Unix socket server
#      speaking Klipper's API protocol) passes the handshake of
#      `[router evil]`, then sends one hostile frame per round, sized just
#      under the module's frame limit (MAX_FRAME, read from link/transport.py):
#      many small nested arrays, small floats, small dicts, long strings of
#      escapes, nesting just below / above framing.MAX_DEPTH repeated; once
#      just over the limit. Each as a push and as the reply to the router's
#      keepalive `info`. The stall is the host's reactor lateness, from the
#      test-only [lateness_probe] (a 5 ms timer inside main); the longest
#      gap in answers to `info` polled every 3 ms from an API client on
#      main's socket is printed beside it (poll_gap_ms).
#   2. push flood: a klippy without the module (`plain`, served by main's
#      `[router plain]`) runs a macro doing N
#      action_call_remote_method("router/printers/list"); main's CPU time
#      (utime+stime, minus its idle rate; schedstat beside it, to the ns)
#      per push for N=1000 (20 runs) and 10000, their ratio (about 1 when
#      the cost is linear), and main's reactor lateness during the flood.
# Fails (exit 1) when a frame or a flood stalls main more than 50 ms, or
# the per-push cost ratio exceeds 2.0. (The ratio varies from run to run:
# how many pushes main reads per wake-up depends on timing; the flood's
# stall is the steadier sign of per-push callbacks.)
#
#   .venv/bin/python bench/frame_stall.py [--rounds 1] [--quick]
#                                         [--module DIR]
# With the venv's klippy package (no KLIPPER_PATH), klippy runs from a
# private copy of that package with DIR (default: this checkout's
# klippy_extras/router) linked in, so concurrent runs that link another
# module into the venv do not matter; MAX_FRAME and MAX_DEPTH are read
# from DIR.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import argparse, ast, collections, json, os, select, shlex, shutil, socket
import sys
import tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'support'))
from fakepeer import close_quietly  # noqa: E402
from harness import (  # noqa: E402
    ApiClient, Mesh, Runtime, cpu_seconds as sched_cpu, peer_section)

ETX = b'\x03'
STALL_LIMIT_MS = 50.
RATIO_LIMIT = 2.0
TICK = os.sysconf('SC_CLK_TCK')
READY_MSG = 'Printer is ready'


MODULE_DIR = os.path.join(ROOT, 'klippy_extras', 'router')
for i, a in enumerate(sys.argv[:-1]):   # before the constants below
    if a == '--module':
        MODULE_DIR = os.path.abspath(sys.argv[i + 1])
    elif a.startswith('--module='):
        MODULE_DIR = os.path.abspath(a.split('=', 1)[1])


def module_constant(filename, name):
    """A module-level constant of the module's <filename>, read from its
    source (its files have relative imports: not importable alone)."""
    path = os.path.join(MODULE_DIR, filename)
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name
                for t in node.targets):
            return eval(compile(ast.Expression(node.value), path, 'eval'),
                        {'__builtins__': {}})
    raise SystemExit("%s not found in %s" % (name, path))


MAX_FRAME = module_constant(os.path.join('link', 'transport.py'),
                            'MAX_FRAME')
MAX_DEPTH = module_constant(os.path.join('link', 'sansio', 'framing.py'),
                            'MAX_DEPTH')


# ---------------------------------------------------------------------------
# Hostile frames
# ---------------------------------------------------------------------------

# The payload is the list opened at the end of each prefix
PUSH_PREFIX = b'{"router":"status","params":{"status":{"evil":['
PUSH_SUFFIX = b']}}}'
# %d: the id of the router's keepalive request, filled in when it comes
REPLY_PREFIX = (b'{"id":%d,"result":{"state":"ready","state_message":'
                b'"Printer is ready","app":"Klipper","hostname":"evil",'
                b'"software_version":"fake","evil":[')
REPLY_SUFFIX = b']}}'
ID_WIDTH = 9   # room left for the request id


def open_levels(prefix):
    """Nesting level of the payload list (the message itself is level 1),
    as framing.depth counts it."""
    return prefix.count(b'[') + prefix.count(b'{') - prefix.count(
        b']') - prefix.count(b'}')


def fill(head_len, tail_len, item, target, last=None):
    """Payload body: items joined by ',' so that the frame is at most
    target bytes; last(room) may add a shorter final item."""
    room = target - head_len - tail_len
    n = max(1, (room + 1) // (len(item) + 1))
    body = b','.join([item] * n)
    if last is not None and room - len(body) > 8:
        body += b',' + last(room - len(body) - 1)
    return body


ESC_UNIT = b'\\u00e9\\n'


def esc_string(size):
    return b'"' + ESC_UNIT * max(0, (size - 2) // len(ESC_UNIT)) + b'"'


def payload_item(kind, level):
    """One element of the payload list, whose own level is level+1."""
    if kind == 'arrays':
        return b'[]', None
    if kind == 'floats':
        return b'1.5', None
    if kind == 'dicts':
        return b'{}', None
    if kind == 'escapes':
        return esc_string(1 << 20), esc_string
    if kind in ('deep_below', 'deep_above'):
        k = MAX_DEPTH - level + (1 if kind == 'deep_above' else 0)
        return b'[' * k + b']' * k, None
    raise ValueError(kind)


def load_framing():
    """framing.py of the module, loaded alone (it imports only json), for
    its pre-decoding cost check if it has one; else None."""
    import importlib.util
    try:
        spec = importlib.util.spec_from_file_location(
            'bench_framing', os.path.join(MODULE_DIR, 'link', 'sansio',
                                         'framing.py'))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except Exception:
        return None
    return mod if callable(getattr(mod, 'check_cost', None)) else None


FRAMING = load_framing()


def accepted_by_cost_check(data):
    try:
        FRAMING.check_cost(data)
    except Exception:
        return False
    return True


class Frame:
    """A hostile frame. variant 'limit': just under MAX_FRAME bytes;
    'oversize': just over it; 'maxcost': the most items that the module's
    own pre-decoding check (framing.check_cost, when it has one) lets
    through: the worst frame that is decoded."""
    def __init__(self, kind, mode, variant='limit'):
        self.kind, self.mode, self.variant = kind, mode, variant
        self.name = '%s_%s' % (kind + ('' if variant == 'limit' else '_'
                                       + variant), mode)
        target = MAX_FRAME + 4096 if variant == 'oversize' else MAX_FRAME - 16
        prefix = PUSH_PREFIX if mode == 'push' else REPLY_PREFIX
        suffix = PUSH_SUFFIX if mode == 'push' else REPLY_SUFFIX
        head_len = (len(prefix) - 2 + ID_WIDTH if mode == 'reply'
                    else len(prefix))
        item, last = payload_item(kind, open_levels(prefix))
        self.prefix, self.suffix = prefix, suffix
        if variant != 'maxcost':
            self.body = fill(head_len, len(suffix), item, target, last)
            return
        if kind == 'escapes':
            item = esc_string(512)
        n_max = fill(head_len, len(suffix), item, target).count(item)
        def frame_of(n):
            self.body = b','.join([item] * n)
            return self.data(10 ** ID_WIDTH - 1)[:-1]
        lo, hi = 0, n_max   # accepted(lo) is assumed
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if accepted_by_cost_check(frame_of(mid)):
                lo = mid
            else:
                hi = mid - 1
        frame_of(lo)
        self.capped = lo < n_max

    @classmethod
    def maxcost(cls, kind, mode):
        """The 'maxcost' frame, or None when the module has no cost check
        or it lets the full-size frame through (same as 'limit')."""
        if FRAMING is None:
            return None
        frame = cls(kind, mode, 'maxcost')
        return frame if frame.capped else None

    def data(self, req_id=None):
        prefix = self.prefix % (req_id,) if self.mode == 'reply' \
            else self.prefix
        return prefix + self.body + self.suffix + ETX


def bracket_depth(data):
    """Nesting depth of a JSON text without brackets inside strings; the
    message itself is level 1, as framing.MAX_DEPTH counts it."""
    level = deepest = 0
    for c in data:
        if c in b'[{':
            level += 1
            deepest = max(deepest, level)
        elif c in b']}':
            level -= 1
    return deepest


def check_depth_kinds():
    """deep_below is exactly MAX_DEPTH deep and deep_above one more."""
    for prefix, suffix in ((PUSH_PREFIX, PUSH_SUFFIX),
                           (REPLY_PREFIX % (1,), REPLY_SUFFIX)):
        for kind, want in (('deep_below', MAX_DEPTH),
                           ('deep_above', MAX_DEPTH + 1)):
            item, _ = payload_item(kind, open_levels(prefix))
            sample = prefix + item + b',' + item + suffix
            json.loads(sample)
            got = bracket_depth(sample)
            if got != want:
                raise SystemExit("bench bug: %s depth %d, want %d"
                                 % (kind, got, want))


# ---------------------------------------------------------------------------
# The fake peer
# ---------------------------------------------------------------------------

def frame(obj):
    return json.dumps(obj, separators=(',', ':')).encode() + ETX


def marker(seq):
    """A sane push after the hostile frame: main shows it once it has
    handled everything before it on the link."""
    return frame({'router': 'status', 'params': {'status': {'webhooks': {
        'state': 'ready', 'state_message': '%s #%d' % (READY_MSG, seq)}}}})


def normal_result(method, params, module):
    if method == 'info':
        return {'state': 'ready', 'state_message': READY_MSG,
                'app': 'Klipper', 'hostname': 'evil',
                'software_version': 'fake'}
    if method == 'router/info' and module:
        return {'name': 'evil', 'version': '0.1.0', 'peers': []}
    if method in ('objects/subscribe', 'objects/query'):
        objects = params.get('objects') or {}
        return {'eventtime': time.monotonic(), 'status': {
            name: ({'state': 'ready', 'state_message': READY_MSG}
                   if name == 'webhooks' else {}) for name in objects}}
    if method == 'objects/list':
        return {'objects': ['webhooks', 'print_stats']}
    if method in ('register_remote_method', 'gcode/script'):
        return {}
    return None


class FakeConn:
    """One connection from main's router, served by its own thread."""
    def __init__(self, sock, module):
        self.sock = sock
        self.module = module
        self.lock = threading.Lock()     # one frame at a time on the wire
        self.ready = threading.Event()   # objects/subscribe answered
        self.ended = threading.Event()
        self.armed = None                # (Frame, marker bytes) for 'info'
        self.replied = threading.Event()
        self._buf = b''

    def send(self, data):
        with self.lock:
            self.sock.sendall(data)

    def run(self):
        try:
            # No socket timeout: it would also cut a sendall of another
            # thread short (a truncated frame is garbage, not a big frame)
            while True:
                if not select.select([self.sock], [], [], .2)[0]:
                    continue
                data = self.sock.recv(65536)
                if not data:
                    break
                parts = (self._buf + data).split(ETX)
                self._buf = parts.pop()
                for part in parts:
                    if part.strip():
                        self._answer(json.loads(part))
        except OSError:
            pass
        finally:
            self.ended.set()
            close_quietly(self.sock)

    def _answer(self, msg):
        method, req_id = msg.get('method'), msg.get('id')
        if req_id is None or not isinstance(method, str):
            return
        if method == 'info' and self.ready.is_set() and self.armed:
            hostile, mark = self.armed
            self.armed = None
            self.replied.set()
            self.send(hostile.data(req_id) + mark)
            return
        result = normal_result(method, msg.get('params') or {}, self.module)
        if result is None:
            self.send(frame({'id': req_id, 'error': {
                'error': 'WebRequestError',
                'message': 'No registered callback for path %s'
                % (method,)}}))
        else:
            self.send(frame({'id': req_id, 'result': result}))
        if method == 'objects/subscribe':
            self.ready.set()


class FakePeer:
    def __init__(self, path, module):
        self.module = module
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(4)
        self.conn = None
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            conn = FakeConn(sock, self.module)
            self.conn = conn
            threading.Thread(target=conn.run, daemon=True).start()

    def stop(self):
        try:
            self.server.close()
        except OSError:
            pass
        if self.conn is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# ---------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------

class Poller:
    """`info` to main every 3 ms from its own API connection; the longest
    gap between answers in a window."""
    def __init__(self, path):
        self.client = ApiClient(path)
        self.times = collections.deque(maxlen=200000)
        self.enabled = threading.Event()
        self.stopped = False
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.stopped:
            if not self.enabled.wait(.1):
                continue
            sent = time.monotonic()
            try:
                self.client.request('info', {}, timeout=120.)
            except Exception:
                if self.stopped:
                    return
                time.sleep(.05)
                continue
            self.times.append((sent, time.monotonic()))
            time.sleep(.003)

    def gap(self, t0, t1):
        """Longest time between answers from t0 to the first answer to a
        request sent after t1 (the one pending at t1 may span a stall)."""
        deadline = time.monotonic() + 120.
        while not any(sent >= t1 for sent, done in list(self.times)):
            if time.monotonic() > deadline or self.stopped:
                return None
            time.sleep(.01)
        times = []
        for sent, done in list(self.times):
            if done < t0:
                times = [done]
                continue
            times.append(done)
            if sent >= t1:
                break
        return max(b - a for a, b in zip(times, times[1:]))

    def stop(self):
        self.stopped = True
        self.client.close()


def cpu(pid):
    with open('/proc/%d/stat' % (pid,)) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(TICK)


# A stalled main answers late: long timeouts
def query(node, name):
    return node.client.request('objects/query', {'objects': {name: None}},
                               timeout=120.)['status'][name]


def reset_probe(node):
    node.client.request('lateness_probe/reset', {}, timeout=120.)


def probe_max_ms(node):
    late = query(node, 'lateness_probe')
    return late['max'] * 1000., late['count']


def evil_status(main):
    return query(main, 'router')['peers']['evil']


def wait_for(predicate, timeout, interval=.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def wait_link_ready(main, fake, timeout=20.):
    def ok():
        conn = fake.conn
        return (conn is not None and conn.ready.is_set()
                and not conn.ended.is_set() and evil_status(main)['ready']
                and conn)
    conn = wait_for(ok, timeout, .05)
    if conn is None:
        raise SystemExit("link to the fake peer not ready: %r"
                         % (evil_status(main),))
    return conn


def frame_round(main, fake, poller, hostile, seq, log):
    t_begin = time.monotonic()
    conn = wait_link_ready(main, fake)
    t_ready = time.monotonic()
    mark = marker(seq)
    want = '%s #%d' % (READY_MSG, seq)
    time.sleep(.1)
    reset_probe(main)
    t0 = time.monotonic()
    if hostile.mode == 'push':
        data = hostile.data() + mark
        threading.Thread(target=lambda: send_quietly(conn, data),
                         daemon=True).start()
    else:
        conn.replied.clear()
        conn.armed = (hostile, mark)
        # The keepalive `info` comes every 2 s
        if not conn.replied.wait(10.):
            raise SystemExit("no keepalive request from main in 10 s")
    size = len(hostile.data(1)) - 1
    def done():
        if conn.ended.is_set():
            return 'closed'
        st = evil_status(main)
        if st['state_message'] == want:
            return 'kept'
        return None
    link = wait_for(done, 60., .02) or 'timeout'
    t1 = time.monotonic()
    stall = probe_max_ms(main)[0]
    gap = poller.gap(t0, t1) * 1000. if poller else None
    reason = ''
    if link == 'closed':
        # Set when main closed the socket, kept over the reconnection
        reason = evil_status(main)['last_error']
    log("  %-26s %8d bytes  stall %8.1f ms  poll gap %8s ms  %s %s"
        " (ready %.1f s, round %.1f s, all %.1f s)"
        % (hostile.name, size, stall, '-' if gap is None else '%.1f' % gap,
           link, reason, t_ready - t_begin, t1 - t0,
           time.monotonic() - t_begin))
    return size, stall, gap, link, reason


def send_quietly(conn, data):
    try:
        conn.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass   # the router closed the link mid-frame


def idle_rates(pid, seconds=3.):
    """main's CPU use while idle (its probe timer, the links' keepalive),
    per second: (utime+stime, schedstat)."""
    t0, c0, s0 = time.monotonic(), cpu(pid), sched_cpu(pid)
    time.sleep(seconds)
    dt = time.monotonic() - t0
    return (cpu(pid) - c0) / dt, (sched_cpu(pid) - s0) / dt


def wait_idle(pids, rates, quiet=.3, timeout=180.):
    """Until no pid used more than its idle rate (rates, by pid) plus
    2 ms of CPU over `quiet` s (schedstat)."""
    hist = collections.deque()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        hist.append((now, [sched_cpu(p) for p in pids]))
        while hist and hist[0][0] < now - quiet - .01:
            hist.popleft()
        t_first, c_first = hist[0]
        if now - t_first >= quiet - .03 and all(
                c - c0 <= rate * (now - t_first) + .002
                for c, c0, rate in zip(hist[-1][1], c_first, rates)):
            return
        time.sleep(.03)
    raise SystemExit("main/plain still busy after %.0f s" % (timeout,))


def flood(main, plain, n, reps, rates, log):
    """main's CPU seconds per push, utime+stime and schedstat, minus its
    idle rate; and main's max reactor lateness during the floods. A last
    router/gcode/script push (FLOOD_DONE on main) says main has run all
    the calls: pushes are handled in order."""
    used = [0., 0.]
    stall = 0.
    for rep in range(reps):
        wait_idle([main.pid, plain.pid], [rates[main.pid][1],
                                          rates[plain.pid][1]])
        reset_probe(main)
        seq = flood.seq = getattr(flood, 'seq', 0) + 1
        t0, c0, s0 = time.monotonic(), cpu(main.pid), sched_cpu(main.pid)
        plain.gcode("FLOOD N=%d SEQ=%d" % (n, seq), timeout=600.)
        if not wait_for(lambda: query(main, 'gcode_macro FLOOD_DONE')[
                'seq'] == seq, 300.):
            raise SystemExit("main did not run FLOOD_DONE %d" % (seq,))
        t1, c1, s1 = time.monotonic(), cpu(main.pid), sched_cpu(main.pid)
        stat = (c1 - c0) - rates[main.pid][0] * (t1 - t0)
        sched = (s1 - s0) - rates[main.pid][1] * (t1 - t0)
        used[0] += stat
        used[1] += sched
        late = probe_max_ms(main)[0]
        stall = max(stall, late)
        if n >= 10000 or rep == 0:
            log("  flood n=%d #%d: main cpu %.3f s (schedstat %.3f s) over"
                " %.2f s, stall %.1f ms" % (n, rep + 1, stat, sched,
                                            t1 - t0, late))
    log("  flood n=%d: %d runs, main cpu %.3f s (schedstat %.3f s) in all"
        % (n, reps, used[0], used[1]))
    return used[0] / (n * reps), used[1] / (n * reps), stall


# ---------------------------------------------------------------------------

def private_runtime():
    """The harness's Runtime; for the venv's klippy package, a private
    copy of it (PYTHONPATH comes before site-packages) with MODULE_DIR and
    the lateness probe linked into its extras. Returns (runtime, copy)."""
    runtime = Runtime()
    if runtime.flavor != 'pypi':
        if os.path.realpath(MODULE_DIR) != os.path.realpath(os.path.join(
                ROOT, 'klippy_extras', 'router')):
            raise SystemExit("--module needs the venv's klippy package")
        runtime.install_module()
        runtime.install_probe()
        return runtime, None
    base = tempfile.mkdtemp(prefix='fs-klippy-', dir='/tmp')
    dest = os.path.join(base, 'klippy')
    shutil.copytree(runtime.install_dir, dest, symlinks=True,
                    ignore=shutil.ignore_patterns('__pycache__'))
    extras = os.path.join(dest, 'extras')
    for name in ('router', 'lateness_probe.py'):
        if os.path.lexists(os.path.join(extras, name)):
            os.unlink(os.path.join(extras, name))
    os.symlink(MODULE_DIR, os.path.join(extras, 'router'))
    runtime.install_dir = dest
    runtime.install_probe()
    os.environ['PYTHONPATH'] = os.pathsep.join(
        [base] + [p for p in [os.environ.get('PYTHONPATH')] if p])
    return runtime, base


FLOOD_MACRO = """
[gcode_macro FLOOD]
gcode:
  {% for i in range(params.N|int) %}
  {action_call_remote_method("router/printers/list")}
  {% endfor %}
  {action_call_remote_method("router/gcode/script", target="main",
                             script="FLOOD_DONE SEQ=%d" % (params.SEQ|int))}
"""

FLOOD_DONE_MACRO = """
[gcode_macro FLOOD_DONE]
variable_seq: 0
gcode:
  SET_GCODE_VARIABLE MACRO=FLOOD_DONE VARIABLE=seq VALUE={params.SEQ|int}
"""

KINDS = ('arrays', 'floats', 'dicts', 'escapes', 'deep_below', 'deep_above')


def main():
    ap = argparse.ArgumentParser(
        description="How long a hostile peer stalls a host's reactor"
        " (hostile frames, push floods); see the top of this file.")
    ap.add_argument('--rounds', type=int, default=1,
                    help="repeat every frame kind and flood (max / sum)")
    ap.add_argument('--quick', action='store_true',
                    help="frames as pushes only, fewer small floods")
    ap.add_argument('--no-module', action='store_true',
                    help="the fake peer answers router/info with an error"
                    " (a Klipper without the module)")
    ap.add_argument('--module', default=MODULE_DIR,
                    help="the router module directory to run (default:"
                    " this checkout's klippy_extras/router)")
    ap.add_argument('--kinds', default=','.join(KINDS),
                    help="frame kinds to send (default: all)")
    ap.add_argument('--keep', action='store_true',
                    help="keep the klippy logs (their folder is printed)")
    ap.add_argument('--large', type=int, default=10000,
                    help="the large flood's N (default 10000; the ratio"
                    " compares it with N=1000)")
    ap.add_argument('--no-poll', action='store_true',
                    help="no `info` poller beside the lateness probe")
    args = ap.parse_args()
    print("command: %s" % (' '.join(shlex.quote(a) for a in
                                     [sys.executable] + sys.argv),))
    print("module: %s; limits: MAX_FRAME=%d (transport.py) MAX_DEPTH=%d"
          " (framing.py)" % (MODULE_DIR, MAX_FRAME, MAX_DEPTH))
    sys.stdout.flush()
    def log(text):
        sys.stderr.write(text + '\n')
        sys.stderr.flush()
    check_depth_kinds()

    modes = ('push',) if args.quick else ('push', 'reply')
    kinds = [k for k in args.kinds.split(',') if k]
    for k in kinds:
        if k not in KINDS:
            ap.error("unknown kind %r (choose from %s)"
                     % (k, ', '.join(KINDS)))
    plan = []
    for m in modes:
        for k in kinds:
            plan.append(lambda k=k, m=m: Frame(k, m))
            if Frame.maxcost(k, m) is not None:
                plan.append(lambda k=k, m=m: Frame.maxcost(k, m))
    plan.append(lambda: Frame('arrays', 'push', 'oversize'))
    small_reps = 8 if args.quick else 20

    runtime, private = private_runtime()
    mesh = Mesh(runtime)
    fake_path = os.path.join(mesh.workdir, 'evil.sock')
    fake = FakePeer(fake_path, module=not args.no_module)
    plain = mesh.add('plain', FLOOD_MACRO)
    main_node = mesh.add('main', "\n[router]\nname: main\n"
                         + peer_section('evil', fake_path)
                         + peer_section('plain', mesh.sock('plain'))
                         + "\n[lateness_probe]\n" + FLOOD_DONE_MACRO)
    poller = None
    results = collections.OrderedDict()
    floods = {}
    t_start = time.monotonic()
    try:
        mesh.start()
        mesh.wait_links(30.)
        main_node.client
        if not args.no_poll:
            poller = Poller(main_node.sock)
            poller.enabled.set()
        log("frames (%d rounds of %d):" % (args.rounds, len(plan)))
        seq = 0
        for r in range(args.rounds):
            for make in plan:
                hostile = make()
                seq += 1
                res = frame_round(main_node, fake, poller, hostile, seq, log)
                results.setdefault(hostile.name, []).append(res)
            if not main_node.alive():
                raise SystemExit("main exited:\n" + main_node.log_tail())
        if poller:
            poller.enabled.clear()
        # Push flood
        # The remote methods are registered on plain
        plain.gcode("FLOOD N=1 SEQ=0")
        time.sleep(.5)
        rates = {main_node.pid: idle_rates(main_node.pid),
                 plain.pid: idle_rates(plain.pid, .5)}
        log("push flood (main idle: %.2f %% CPU):"
            % (rates[main_node.pid][1] * 100.,))
        for n, reps in ((1000, small_reps * args.rounds),
                        (args.large, args.rounds)):
            floods[n] = flood(main_node, plain, n, reps, rates, log)
        state = main_node.state()
    finally:
        if poller:
            poller.stop()
        fake.stop()
        if args.keep:
            for node in mesh.nodes.values():
                node.stop()
            print("logs kept in %s" % (mesh.workdir,))
        else:
            mesh.close()
        if private:
            shutil.rmtree(private, ignore_errors=True)

    failed = []
    for name, runs in results.items():
        size = runs[0][0]
        stall = max(r[1] for r in runs)
        gaps = [r[2] for r in runs if r[2] is not None]
        links = sorted(set(r[3] for r in runs))
        reasons = sorted(set(r[4] for r in runs if r[4]))
        line = ("frame_stall kind=%s bytes=%d stall_ms=%.1f link=%s"
                % (name, size, stall, '/'.join(links)))
        if gaps:
            line += " poll_gap_ms=%.1f" % (max(gaps),)
        if reasons:
            line += " reason=%s" % (json.dumps('; '.join(reasons)),)
        print(line)
        if stall > STALL_LIMIT_MS or 'timeout' in links:
            failed.append("%s %.0f ms" % (name, stall))
    for n in sorted(floods):
        stat, sched, stall = floods[n]
        print("push_flood n=%d cpu_us_per_push=%.1f sched_us_per_push=%.1f"
              " stall_ms=%.1f" % (n, stat * 1e6, sched * 1e6, stall))
        if stall > STALL_LIMIT_MS:
            failed.append("push_flood n=%d %.0f ms" % (n, stall))
    ratio = floods[args.large][0] / max(floods[1000][0], 1e-9)
    sched_ratio = floods[args.large][1] / max(floods[1000][1], 1e-9)
    print("push_flood_ratio ratio=%.2f sched_ratio=%.2f (cpu per push,"
          " n=%d over n=1000, utime+stime / schedstat: linear ~1, limit"
          " %.1f on ratio)" % (ratio, sched_ratio, args.large, RATIO_LIMIT))
    problems = []
    if failed:
        problems.append("stall > %.0f ms: %s" % (STALL_LIMIT_MS,
                                                        ', '.join(failed)))
    if ratio > RATIO_LIMIT:
        problems.append("per-push cost ratio %.2f > %.1f"
                        % (ratio, RATIO_LIMIT))
    if state != 'ready':
        problems.append("main not ready at the end (%s)" % (state,))
    print("elapsed %.0f s" % (time.monotonic() - t_start,))
    if problems:
        print("target FAILED: " + '; '.join(problems))
        return 1
    print("target met: every frame and flood stall <= %.0f ms, per-push"
          " cost ratio <= %.1f" % (STALL_LIMIT_MS, RATIO_LIMIT))
    return 0


if __name__ == '__main__':
    sys.exit(main())
