# A fake peer for tests: a Unix socket server that the router dials as
# an instance, answering like Klipper except where a scenario says.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import json, select, socket, threading, time

ETX = b'\x03'


def frame(obj):
    return json.dumps(obj).encode() + ETX


WEBHOOKS = {'state': 'ready', 'state_message': 'Printer is ready'}
# Its objects and their values, as a sane Klipper answers them (a router
# asks objects/list when a followed object answers no value)
STATUS = {'webhooks': WEBHOOKS, 'print_stats': {'state': 'standby'},
          'toolhead': {'homed_axes': ''}, 'gcode_macro FAKE': {}}


def default_result(method, params):
    """What a sane Klipper with the module would answer."""
    if method == 'info':
        return {'state': 'ready', 'state_message': 'Printer is ready',
                'app': 'Klipper', 'hostname': 'fake',
                'software_version': 'fake'}
    if method == 'router/info':
        return {'name': 'fake', 'version': '0.1.0', 'peers': []}
    if method == 'list_endpoints':
        return {'endpoints': ['list_endpoints', 'info', 'gcode/script',
                              'objects/list', 'objects/subscribe',
                              'router/info', 'router/gcode']}
    if method in ('objects/subscribe', 'objects/query'):
        objects = params.get('objects') or {}
        return {'eventtime': time.monotonic(),
                'status': {name: dict(STATUS.get(name, {}))
                           for name in objects}}
    if method == 'objects/list':
        return {'objects': list(STATUS)}
    if method == 'router/event/deliver':
        return {'handlers': 0}
    if method in ('gcode/script', 'register_remote_method') \
            or method.startswith('router/'):
        return {}
    return None


SCRIPT_METHODS = ('gcode/script', 'router/gcode')


def close_quietly(sock):
    try:
        sock.close()
    except OSError:
        pass


class FakeConn:
    """One connection from the router to the fake peer, served by its own
    thread: answers like Klipper, except where the scenario says."""
    def __init__(self, fake, sock, scenario):
        self.fake = fake
        self.sock = sock
        self.scenario = scenario
        self.hooks = dict(scenario.hooks) if scenario else {}
        self.ready = threading.Event()      # subscribe answered
        self.injected = threading.Event()   # the scenario did its part
        self.ended = threading.Event()
        self.closed_by_router = False
        self.after_ready_done = False
        self.error = None
        self._buf = b''
        self._stop = False
        # The test's thread and this connection's own both send: whole
        # frames, never interleaved (a reply inside a test's 2 MiB frame
        # would be a frame the router never got from a real peer)
        self._send_lock = threading.Lock()

    def send(self, data):
        if not isinstance(data, bytes):
            data = frame(data)
        with self._send_lock:
            self.sock.sendall(data)

    def push(self, *msgs):
        self.send(b''.join(frame(m) for m in msgs))

    def reply(self, msg, **kw):
        out = {'id': msg['id']}
        out.update(kw)
        return frame(out)

    def close(self):
        """Closes from our side (the router sees EOF)."""
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def recv_msgs(self, timeout):
        """Requests from the router; None at EOF."""
        r, w, x = select.select([self.sock], [], [], timeout)
        if not r:
            return []
        data = self.sock.recv(65536)
        if not data:
            return None
        parts = (self._buf + data).split(ETX)
        self._buf = parts.pop()
        return [json.loads(p) for p in parts if p.strip()]

    def run(self):
        sc = self.scenario
        try:
            if sc is not None and sc.on_connect:
                self.send(sc.on_connect)
            self._maybe_injected()
            while not self._stop:
                msgs = self.recv_msgs(.05)
                if msgs is None:
                    if not self._stop:
                        self.closed_by_router = True
                    break
                for msg in msgs:
                    self._answer(msg)
                self._maybe_injected()
        except OSError as e:
            if not self._stop:
                self.closed_by_router = True
                self.error = e
        except Exception as e:   # a bug in the test: show it
            self.error = e
        finally:
            self.injected.set()
            self.ended.set()
            close_quietly(self.sock)

    def _answer(self, msg):
        method = msg.get('method')
        if 'id' not in msg or not isinstance(method, str):
            return
        # A script comes as router/gcode to a peer with the module, as
        # gcode/script to one without: the scenarios name it 'script'.
        hook = self.hooks.pop('script' if method in SCRIPT_METHODS
                              else method, None)
        if hook is not None:
            data = hook(self, msg)
            if data:
                self.send(data)
        else:
            result = default_result(method, msg.get('params') or {})
            if result is None:
                self.send(self.reply(msg, error={
                    'error': 'WebRequestError',
                    'message': 'No registered callback for path %s'
                    % (method,)}))
            else:
                self.send(self.reply(msg, result=result))
        if method == 'objects/subscribe' and not self.ready.is_set():
            self.ready.set()
            sc = self.scenario
            if sc is not None and sc.after_ready is not None:
                sc.after_ready(self)
                self.after_ready_done = True

    def _maybe_injected(self):
        sc = self.scenario
        if sc is None or self.injected.is_set():
            return
        if self.hooks:
            return
        if sc.after_ready is not None and not self.after_ready_done:
            return
        self.injected.set()


class FakePeer:
    """A Unix socket server the router dials as peer 'fake'. The next
    connection gets the scenario set with arm(); later ones are sane."""
    def __init__(self, path):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(8)
        self.lock = threading.Lock()
        self.next_scenario = None
        self.conns = []
        self._stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self._stopping:
            try:
                sock, addr = self.server.accept()
            except OSError:
                break
            with self.lock:
                scenario, self.next_scenario = self.next_scenario, None
                conn = FakeConn(self, sock, scenario)
                self.conns.append(conn)
            if scenario is not None:
                scenario.conn = conn
                scenario.accepted.set()
            threading.Thread(target=conn.run, daemon=True).start()

    def arm(self, scenario):
        with self.lock:
            self.next_scenario = scenario

    def live(self):
        with self.lock:
            return [c for c in self.conns if not c.ended.is_set()]

    def kick(self):
        for conn in self.live():
            conn.close()

    def stop(self):
        self._stopping = True
        self.kick()
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()


class Scenario:
    """expect: 'close' (the router drops the link, the log says why),
    'open' (the link survives the garbage), 'ours' (the fake hangs up)."""
    def __init__(self, name, expect, reason=None, on_connect=b'',
                 hooks=None, after_ready=None, probe=None):
        self.name = name
        self.expect = expect
        self.reason = reason
        self.on_connect = on_connect
        self.hooks = hooks or {}
        self.after_ready = after_ready
        self.probe = probe
        self.accepted = threading.Event()
        self.conn = None

    def __repr__(self):
        return self.name
