# A link proxy for tests: a Unix socket that forwards to another
# process's API socket, so a test can kill and restore one link.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import contextlib, os, selectors, socket, threading

CHUNK = 65536
MAX_BUF = 8 << 20      # stop reading a source while its output is this big
FLUSH_TIMEOUT = 0.5    # best-effort flush on close must not hang the thread
R, W = selectors.EVENT_READ, selectors.EVENT_WRITE


def _unix():
    return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)


def _unlink(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class _Pair:
    def __init__(self, a, b):
        self.socks, self.closed = (a, b), False
        self.out = {a: bytearray(), b: bytearray()}  # waiting to go to key
        self.mask = {a: 0, b: 0}                     # registered events

    def peer(self, s):
        return self.socks[1] if s is self.socks[0] else self.socks[0]


class LinkProxy:
    def __init__(self, listen_path, target_path):
        self.listen_path, self.target_path = listen_path, target_path
        self._sel = selectors.DefaultSelector()
        self._pairs, self._requests = set(), []
        self._killed = self._stopping = self._closed = False
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._listener = self._thread = None

    killed = property(lambda self: self._killed)
    connections = property(lambda self: len(self._pairs))

    def start(self):
        _unlink(self.listen_path)
        self._listener = _unix()
        self._listener.bind(self.listen_path)
        self._listener.listen(16)
        for s in (self._listener, self._wake_r):
            s.setblocking(False)
            self._sel.register(s, R)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='linkproxy')
        self._thread.start()

    def kill(self):
        self._call(self._do_kill)

    def restore(self):
        self._call(lambda: setattr(self, '_killed', False))

    def close(self):
        if self._closed:
            return
        self._closed = True
        self._call(lambda: setattr(self, '_stopping', True))
        if self._thread:
            self._thread.join()
        self._do_kill()
        for s in filter(None, (self._listener, self._wake_r, self._wake_w)):
            s.close()
        self._sel.close()
        if self._listener:
            _unlink(self.listen_path)

    def _call(self, fn):
        # Run fn on the proxy thread, between two whole chunks, so a kill
        # never lands half way through forwarding one.
        if not (self._thread and self._thread.is_alive()):
            return fn()
        done = threading.Event()
        with self._lock:
            self._requests.append((fn, done))
        self._wake_w.send(b'\0')
        done.wait()

    def _serve_requests(self):
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)
        with self._lock:
            reqs, self._requests = self._requests, []
        for fn, done in reqs:
            try:
                fn()
            finally:
                done.set()

    def _do_kill(self):
        self._killed = True
        for pair in list(self._pairs):
            self._close_pair(pair)

    def _run(self):
        while not self._stopping:
            for key, mask in self._sel.select():
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is self._wake_r:
                    self._serve_requests()
                elif not key.data.closed:  # may have closed earlier in batch
                    self._on_pair(key.data, key.fileobj, mask)

    def _accept(self):
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        target = _unix()
        try:
            if self._killed:  # dialer sees EOF and goes into its backoff
                raise ConnectionRefusedError
            target.connect(self.target_path)  # Unix connect is immediate
        except OSError:
            target.close()
            conn.close()
            return
        conn.setblocking(False)
        target.setblocking(False)
        pair = _Pair(conn, target)
        self._pairs.add(pair)
        self._update(pair)

    def _on_pair(self, pair, s, mask):
        ok = not mask & W or self._send(s, pair.out[s])
        if ok and mask & R:
            ok = self._recv(pair, s)
        if ok:
            self._update(pair)
        else:
            self._close_pair(pair)

    def _recv(self, pair, s):
        try:
            data = s.recv(CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        dst = pair.peer(s)
        pair.out[dst] += data
        return bool(data) and self._send(dst, pair.out[dst])

    def _send(self, s, buf):
        try:
            while buf:
                del buf[:s.send(buf)]
        except BlockingIOError:
            pass
        except OSError:
            return False
        return True

    def _update(self, pair):
        # Read unless the far side is backed up; write while buffered.
        for s in pair.socks:
            mask = R if len(pair.out[pair.peer(s)]) < MAX_BUF else 0
            mask |= W if pair.out[s] else 0
            if mask != pair.mask[s]:  # selectors refuses an empty mask
                if pair.mask[s]:
                    self._sel.unregister(s)
                if mask:
                    self._sel.register(s, mask, pair)
                pair.mask[s] = mask

    def _close_pair(self, pair):
        pair.closed = True
        for s in pair.socks:
            if pair.mask[s]:
                self._sel.unregister(s)
            # Whole chunks already read still reach the other side.
            with contextlib.suppress(OSError):
                if pair.out[s]:
                    s.settimeout(FLUSH_TIMEOUT)
                    s.sendall(pair.out[s])
            s.close()
        self._pairs.discard(pair)


def _echo_server(path):
    srv = _unix()
    srv.bind(path)
    srv.listen(8)

    def loop():  # one client at a time is enough here
        while True:
            with srv.accept()[0] as c:
                for data in iter(lambda: c.recv(CHUNK), b''):
                    c.sendall(data)
    threading.Thread(target=loop, daemon=True).start()


def _dial(path, data=b''):
    c = _unix()
    c.settimeout(5)
    c.connect(path)
    if data:  # an empty send could hit EPIPE on a link already closed
        c.sendall(data)
    got = bytearray()
    while len(got) < len(data):
        chunk = c.recv(CHUNK)
        assert chunk, 'EOF while echoing'
        got += chunk
    assert got == data
    return c


def _selftest(tmp):
    target, listen = os.path.join(tmp, 'api'), os.path.join(tmp, 'proxy')
    _echo_server(target)
    proxy = LinkProxy(listen, target)
    proxy.start()
    with _dial(listen, os.urandom(4 << 20)) as c:  # beyond socket buffers
        assert proxy.connections == 1
        proxy.kill()
        assert proxy.killed and proxy.connections == 0 and c.recv(1) == b''
    with _dial(listen) as c:
        assert c.recv(1) == b''  # accepted then closed while killed
    proxy.restore()
    with _dial(listen, b'hello'):
        assert not proxy.killed and proxy.connections == 1
        proxy.close()
        proxy.close()
    assert not os.path.exists(listen) and proxy.connections == 0
    print('ok')


if __name__ == '__main__':
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        _selftest(tmp)
