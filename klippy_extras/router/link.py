# One client connection to a peer's API socket, on klippy's reactor
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections, errno, logging, socket
from . import framing, rpc
from .backoff import Backoff

MAX_SEND_BUFFER = 4 * 1024 * 1024   # bytes queued for a peer not reading
# One message from a peer. Decoding one takes up to about 25 ms here (see
# framing.MAX_TOKENS): the full configfile status of a large config fits.
MAX_FRAME = 2 * 1024 * 1024
MAX_INBOX = 2 * MAX_FRAME           # received, not decoded: then stop reading
INBOX_SLICE = .005                  # s of decoding before yielding
READ_CHUNK = 65536
MAX_READS_PER_WAKE = 16             # then let the rest of the reactor run
# Requests sent and not answered, per link. Klipper turns every request it
# reads into a reactor callback and runs all that are due in one pass, so
# a peer flooding it would stall its timers; the rest wait here, in order.
MAX_IN_FLIGHT = 4
MAX_WAITING = 1000


class LinkError(Exception):
    """A request could not be handed to the link (not sent at all)."""


def describe_os_error(e):
    if e.errno == errno.ENOENT:
        return "no socket at this path (peer not started?)"
    if e.errno == errno.ECONNREFUSED:
        return "connection refused (peer not listening)"
    if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
        return "peer busy (connection backlog full)"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied on the socket file"
    return str(e) or type(e).__name__


class PeerLink:
    """Moves bytes only in fd callbacks. Decoded messages, closing and
    user callbacks are handed to reactor callbacks: in some flavors an fd
    callback that unregisters an fd of the current poll batch (its own,
    if write wake-up is set, or another link's) crashes the reactor."""
    def __init__(self, reactor, path, listener, first_delay, max_delay):
        self.reactor = reactor
        self.path = path
        self.listener = listener
        self.backoff = Backoff(first_delay, max_delay)
        self.sock = self.fd_handle = None
        self.connected = False
        self.stopped = True
        self.generation = 0
        self.last_error = ""
        self._closing = False
        self._write_wake = False
        self._send_buf = bytearray()
        self._splitter = framing.FrameSplitter(MAX_FRAME)
        self._requests = rpc.RequestTracker()
        self._in_flight = set()
        self._waiting = collections.deque()   # (request id, frame bytes)
        self._waiting_bytes = 0
        self._inbox = collections.deque()   # raw frames, decoded in order
        self._inbox_bytes = 0
        self._inbox_scheduled = False
        self._reading = True
        self._connect_timer = reactor.register_timer(self._connect_event)
        self._timeout_timer = reactor.register_timer(self._timeout_event)

    # Lifecycle
    def start(self):
        self.stopped = False
        self.reactor.update_timer(self._connect_timer, self.reactor.NOW)

    def stop(self):
        """Closes the socket and every timer; safe to call more than once.
        Runs from klippy:disconnect, so it must never raise."""
        self.stopped = True
        try:
            self._close("router stopped", notify=False)
        except Exception:
            logging.exception("router: error closing link %s", self.path)
        for attr in ('_connect_timer', '_timeout_timer'):
            timer = getattr(self, attr)
            if timer is not None:
                setattr(self, attr, None)
                try:
                    self.reactor.unregister_timer(timer)
                except Exception:
                    pass

    def _connect_event(self, eventtime):
        if self.stopped or self.sock is not None:
            return self.reactor.NEVER
        sock = None
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            # A Unix stream connect completes at once or fails at once
            # (EAGAIN when the peer's listen backlog is full).
            sock.connect(self.path)
        except (OSError, ValueError) as e:
            if sock is not None:
                sock.close()
            error = (describe_os_error(e) if isinstance(e, OSError)
                     else str(e))
            if error != self.last_error:
                logging.info("router: %s: %s", self.path, error)
                self.last_error = error
            return eventtime + self.backoff.next_delay()
        self.sock = sock
        self.fd_handle = self.reactor.register_fd(
            sock.fileno(), self._read_event, self._write_event)
        self.connected = True
        self._closing = False
        self.generation += 1
        logging.info("router: connected to %s", self.path)
        self._call_listener(self.listener.link_up)
        return self.reactor.NEVER

    def note_healthy(self):
        """The session on this link works: next outage starts fast."""
        self.backoff.reset()

    def close(self, reason):
        """Drops the connection (from a timer or callback context only);
        the link dials again after the backoff delay."""
        self._close(reason, notify=True)

    def _close(self, reason, notify):
        if self.sock is None:
            return
        # Unregister before close: a closed fd left in poll spins at 100 %
        # CPU and a reused fd number would be delivered to the old callback.
        self.reactor.unregister_fd(self.fd_handle)
        self.fd_handle = None
        try:
            self.sock.close()
        except OSError:
            pass
        self.sock = None
        self.connected = False
        self._closing = False
        self._write_wake = False
        self._reading = True
        self.generation += 1
        del self._send_buf[:]
        self._splitter.reset()
        self._inbox.clear()
        self._inbox_bytes = 0
        self._in_flight.clear()
        self._waiting.clear()
        self._waiting_bytes = 0
        self.last_error = reason
        logging.info("router: link %s closed: %s", self.path, reason)
        failed = self._requests.fail_all()
        for callback in failed:
            self._call_listener(callback, None, "connection lost (%s)"
                                % (reason,))
        if notify:
            self._call_listener(self.listener.link_down, reason)
        if not self.stopped and self._connect_timer is not None:
            self.reactor.update_timer(
                self._connect_timer,
                self.reactor.monotonic() + self.backoff.next_delay())

    def _defer_close(self, reason):
        if self._closing or self.sock is None:
            return
        self._closing = True
        try:
            self.reactor.set_fd_wake(self.fd_handle, False, False)
        except Exception:
            pass
        gen = self.generation
        def do_close(eventtime):
            if gen == self.generation:
                self.close(reason)
        self.reactor.register_callback(do_close)

    # fd callbacks: bytes only
    def _read_event(self, eventtime):
        if self._closing or self.sock is None or not self._reading:
            return
        try:
            for i in range(MAX_READS_PER_WAKE):
                try:
                    data = self.sock.recv(READ_CHUNK)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK,
                                   errno.EINTR):
                        break
                    self._defer_close("read error: %s" % (e,))
                    return
                if not data:
                    self._defer_close("connection closed by peer")
                    return
                frames = self._splitter.feed(data)
                self._inbox.extend(frames)
                self._inbox_bytes += sum(len(f) for f in frames)
                if self._inbox_bytes > MAX_INBOX:
                    # Decoding lags: let the peer wait (its socket fills)
                    self._set_wake(reading=False)
                    break
                if len(data) < READ_CHUNK:
                    break
        except framing.ProtocolError as e:
            logging.warning("router: %s sent bad data: %s", self.path, e)
            self._defer_close("protocol error: %s" % (e,))
            return
        except Exception:
            logging.exception("router: read error on %s", self.path)
            self._defer_close("internal read error")
            return
        if self._inbox and not self._inbox_scheduled:
            self._inbox_scheduled = True
            self.reactor.register_callback(self._process_inbox)

    def _write_event(self, eventtime):
        if self._closing or self.sock is None:
            return
        try:
            self._flush()
        except Exception:
            logging.exception("router: write error on %s", self.path)
            self._defer_close("internal write error")

    def _flush(self):
        try:
            sent = self.sock.send(self._send_buf)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                self._defer_close("write error: %s" % (e,))
                return
            sent = 0
        if sent:
            del self._send_buf[:sent]
        self._set_wake(writing=bool(self._send_buf))

    def _set_wake(self, reading=None, writing=None):
        reading = self._reading if reading is None else reading
        writing = self._write_wake if writing is None else writing
        if (reading, writing) != (self._reading, self._write_wake):
            self._reading, self._write_wake = reading, writing
            self.reactor.set_fd_wake(self.fd_handle, reading, writing)

    # Message dispatch, from a reactor callback, in slices: a peer sending
    # much costs this instance at most INBOX_SLICE at a time.
    def _process_inbox(self, eventtime):
        self._inbox_scheduled = False
        gen = self.generation
        inbox = self._inbox
        end = self.reactor.monotonic() + INBOX_SLICE
        while inbox and gen == self.generation:
            if self.reactor.monotonic() > end:
                self._inbox_scheduled = True
                self.reactor.register_callback(self._process_inbox)
                break
            frame = inbox.popleft()
            self._inbox_bytes -= len(frame)
            try:
                msg = framing.decode(frame)
            except framing.ProtocolError as e:
                logging.warning("router: %s sent bad data: %s", self.path, e)
                self.close("protocol error: %s" % (e,))
                return
            self._dispatch(msg)
        if (gen == self.generation and self.sock is not None
                and not self._reading and self._inbox_bytes <= MAX_INBOX):
            self._set_wake(reading=True)
        self._pump()
        self._arm_timeout()

    def _dispatch(self, msg):
        if 'id' in msg:
            resolved = self._requests.resolve(msg)
            if resolved is not None:
                self._in_flight.discard(msg['id'])
                callback, result, error = resolved
                self._call_listener(callback, result, error)
                return
            if 'method' not in msg:
                # A reply to a request that already timed out
                logging.debug("router: %s: stray reply %.200r",
                              self.path, msg)
                return
        self._call_listener(self.listener.link_push, msg)

    def _call_listener(self, func, *args):
        try:
            func(*args)
        except framing.ProtocolError as e:
            logging.warning("router: %s: %s", self.path, e)
            if self.sock is not None:
                self._defer_close("protocol error: %s" % (e,))
        except Exception:
            logging.exception("router: internal error handling %s",
                              self.path)

    # Sending
    def send_message(self, msg):
        """Queues one message; raises LinkError when it cannot."""
        if self.sock is None or self._closing:
            raise LinkError("not connected")
        self._send_frame(self._encode(msg))

    def _encode(self, msg):
        try:
            return framing.encode(msg)
        except (TypeError, ValueError) as e:
            raise LinkError("cannot encode message: %s" % (e,))

    def _send_frame(self, data):
        # One budget for what is written but unsent and what waits here
        queued = len(self._send_buf) + self._waiting_bytes
        if queued + len(data) > MAX_SEND_BUFFER:
            raise LinkError("send buffer full (%d bytes): the peer is not"
                            " reading its socket" % (queued,))
        self._send_buf += data
        if not self._write_wake:
            self._flush()

    def request(self, method, params, callback, timeout, priority=False):
        """Sends a request; callback(result, error) is called exactly once,
        from a reactor callback, unless this raises LinkError. Beyond
        MAX_IN_FLIGHT it waits here; priority requests (handshake,
        keepalive) never wait behind others."""
        if self.sock is None or self._closing:
            raise LinkError("not connected")
        if not priority and len(self._waiting) >= MAX_WAITING:
            raise LinkError("%d requests already waiting for this peer"
                            % (len(self._waiting),))
        deadline = self.reactor.monotonic() + timeout
        req_id, msg = self._requests.add(method, params, callback, deadline)
        try:
            data = self._encode(msg)
            if priority or (len(self._in_flight) < MAX_IN_FLIGHT
                            and not self._waiting):
                self._send_frame(data)
                self._in_flight.add(req_id)
            else:
                queued = len(self._send_buf) + self._waiting_bytes
                if queued + len(data) > MAX_SEND_BUFFER:
                    raise LinkError("send buffer full (%d bytes): the peer"
                                    " is not reading its socket" % (queued,))
                self._waiting.append((req_id, data))
                self._waiting_bytes += len(data)
        except LinkError:
            self._requests.cancel(req_id)
            raise
        self._arm_timeout()
        return req_id

    def _pump(self):
        while self._waiting and len(self._in_flight) < MAX_IN_FLIGHT:
            req_id, data = self._waiting.popleft()
            self._waiting_bytes -= len(data)
            if not self._requests.is_pending(req_id):
                continue   # timed out while waiting here
            try:
                self._send_frame(data)
            except LinkError as e:
                resolved = self._requests.resolve(
                    {'id': req_id, 'error': {'message': str(e)}})
                if resolved is not None:
                    self._call_listener(resolved[0], None, resolved[2])
                continue
            self._in_flight.add(req_id)

    def pending_count(self):
        return len(self._requests)

    def send_buffer_size(self):
        return len(self._send_buf)

    def _arm_timeout(self):
        if self._timeout_timer is not None:
            self.reactor.update_timer(
                self._timeout_timer,
                self._requests.next_deadline(self.reactor.NEVER))

    def _timeout_event(self, eventtime):
        expired = self._requests.expire(eventtime)
        if expired:
            self._in_flight.intersection_update(self._requests.pending_ids())
        for callback, deadline in expired:
            self._call_listener(callback, None, "timed out")
        self._pump()
        return self._requests.next_deadline(self.reactor.NEVER)
