# Bytes to and from a peer's API Unix socket, on klippy's reactor
#
# A transport only moves bytes and cuts them into frames: it dials (with
# backoff), reads into frames, writes frames, closes. What the frames mean
# is the link's business (link.py), so another transport (a websocket to a
# remote Moonraker) can carry the same link.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import errno, logging, os, socket
from ..common.timers import drop_timer
from .sansio import framing
from .sansio.backoff import Backoff

MAX_SEND_BUFFER = 4 * 1024 * 1024   # bytes queued for a peer not reading
# One message from a peer. Decoding one takes up to about 25 ms here (see
# framing.MAX_TOKENS): the full configfile status of a large config fits.
MAX_FRAME = 2 * 1024 * 1024
READ_CHUNK = 65536
MAX_READS_PER_WAKE = 16             # then let the rest of the reactor run



class TransportError(Exception):
    """A frame could not be handed to the transport (not sent at all)."""


def describe_os_error(e, path=None):
    """A dial's failure in words; a Unix socket's path is named."""
    at = "" if path is None else " %s" % (path,)
    if e.errno == errno.ENOENT and path is not None:
        if not os.path.isdir(os.path.dirname(path)):
            return ("no socket at %s (its folder does not exist: peer not"
                    " started, or a wrong socket: path?)" % (path,))
        return "no socket at %s (peer not started?)" % (path,)
    if e.errno == errno.ECONNREFUSED:
        return "connection refused%s (peer not listening)" % (
            " at" + at if at else "",)
    if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
        return "peer busy (connection backlog full)"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied on the socket file%s" % (at,)
    return str(e) or type(e).__name__


class StreamWriting:
    """Writing frames to the stream (part of StreamTransport, below)."""
    def _write_event(self, eventtime):
        if self._closing or self.sock is None:
            return
        try:
            self._writable()
        except Exception:
            logging.exception("router: write error on %s", self.describe())
            self._defer_close("internal write error")

    def _writable(self):
        self._flush()

    def _flush(self):
        sent = self._send_some(self._send_buf)
        if sent:
            del self._send_buf[:sent]
        if sent is not None:
            self._set_wake(writing=bool(self._send_buf))

    def _send_some(self, data):
        """How much of data the socket took; None if it failed (closing)"""
        try:
            return self.sock.send(data)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            self._defer_close("write error: %s" % (e,))
            return None

    # Sending
    def buffered(self):
        """Bytes written and not yet sent."""
        return len(self._send_buf)

    def send(self, frame):
        """Queues one frame (the JSON text of a message)."""
        if not self.connected or self._closing:
            raise TransportError("not connected")
        data = self._encode(frame)
        # Nothing queued: straight to the socket, as most frames go
        sent = 0 if self._send_buf or self._write_wake else (
            self._send_some(data))
        if sent is not None and sent < len(data):
            self._send_buf += data[sent:]
            self._set_wake(writing=True)


class StreamTransport(StreamWriting):
    """Moves bytes only in fd callbacks; everything it tells its owner
    (up, frames, down) comes from reactor callbacks: in some flavors an fd
    callback that unregisters an fd of the current poll batch (its own,
    if write wake-up is set, or another link's) crashes the reactor.
    The owner has transport_up(), transport_frames(frames) and
    transport_down(reason); none of them may raise. The one exception is
    take_now(frames), asked from the fd callback: it may take frames
    whose handling cannot close an fd, and returns True if it did.
    A subclass dials (_connect_event), cuts bytes into frames
    (_frames_of) and frames into bytes (_encode)."""
    def __init__(self, reactor, owner, first_delay, max_delay):
        self.reactor = reactor
        self.owner = owner
        self.backoff = Backoff(first_delay, max_delay)
        self.sock = self.fd_handle = None
        self.connected = False
        self.stopped = True
        self.generation = 0
        self.last_error = ""
        # Nothing listens where it dials: no process runs there (the
        # election counts on that, see Peer.proven_down)
        self.nothing_listens = False
        self._closing = False
        self._reading = True
        self._write_wake = False
        self._send_buf = bytearray()
        self._frames = []          # read, not yet handed to the owner
        self._handoff = False
        self._connect_timer = reactor.register_timer(self._connect_event)
        # One timer for every hand-off: cheaper than a register_callback
        # (a timer made and dropped, and a completion) per read
        self._handoff_timer = reactor.register_timer(self._hand_off)

    # Lifecycle
    def start(self):
        self.stopped = False
        self.reactor.update_timer(self._connect_timer, self.reactor.NOW)

    def stop(self):
        """Closes the socket and the timer; safe to call more than once.
        Runs from klippy:disconnect, so it must never raise."""
        self.stopped = True
        try:
            self._close("router stopped", notify=False)
        except Exception:
            logging.exception("router: error closing link %s",
                              self.describe())
        self._connect_timer = drop_timer(self.reactor, self._connect_timer)
        self._handoff_timer = drop_timer(self.reactor, self._handoff_timer)

    def _attach(self, sock):
        self.sock = sock
        self.fd_handle = self.reactor.register_fd(
            sock.fileno(), self._read_event, self._write_event)
        self._closing = False

    def _opened(self):
        """The stream carries frames now (from a timer or callback)."""
        self.connected = True
        self.nothing_listens = False
        self.generation += 1
        logging.info("router: connected to %s", self.describe())
        self.owner.transport_up()
        if self._frames and not self._handoff and self.sock is not None:
            self._handoff = True
            self.reactor.update_timer(self._handoff_timer, self.reactor.NOW)

    def note_healthy(self):
        """The session on this transport works: next outage starts fast."""
        self.backoff.reset()

    def close(self, reason, retry_after=0.):
        """Drops the connection (from a timer or callback context only);
        it dials again after the backoff delay (at least retry_after)."""
        self._close(reason, notify=True, retry_after=retry_after)

    def _close(self, reason, notify, retry_after=0.):
        if self.sock is None:
            return
        was_up = self.connected
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
        self._frames = []
        self._reset_stream()
        if was_up or reason != self.last_error:   # not every dial's failure
            logging.info("router: link %s closed: %s", self.describe(),
                         reason)
        self.last_error = reason
        if notify and was_up:
            self.owner.transport_down(reason)
        self._schedule_dial(retry_after)

    def _schedule_dial(self, retry_after=0.):
        """Sets the next dial after the backoff's delay (at least
        retry_after) and returns when, or None once stopped."""
        if self.stopped or self._connect_timer is None:
            return None
        when = self.reactor.monotonic() + self._retry_delay(retry_after)
        self.reactor.update_timer(self._connect_timer, when)
        return when

    def _retry_delay(self, retry_after=0.):
        """Seconds to the next dial: the backoff's, at least retry_after."""
        return max(retry_after, self.backoff.next_delay())

    def _dial_failed(self, error):
        """A dial failed before a connection existed: logged when the
        error changes (not once per attempt)."""
        if error != self.last_error:
            logging.info("router: %s: %s", self.describe(), error)
        self.last_error = error

    def _defer_close(self, reason, retry_after=0.):
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
                self.close(reason, retry_after)
        self.reactor.register_callback(do_close)

    def pause_reading(self, paused):
        """The owner lags behind: stop reading (the peer's writes block)."""
        if self.sock is not None and not self._closing:
            self._set_wake(reading=not paused)

    # fd callbacks: bytes only
    def _read_event(self, eventtime):
        if self._closing or self.sock is None or not self._reading:
            return
        try:
            for _ in range(MAX_READS_PER_WAKE):
                try:
                    data = self.sock.recv(READ_CHUNK)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK,
                                   errno.EINTR):
                        break
                    self._defer_close("read error: %s" % (e,))
                    return
                if not data:
                    self._defer_close(self._end_of_stream())
                    return
                self._frames.extend(self._frames_of(data))
                if len(data) < READ_CHUNK or self._closing:
                    break
        except framing.ProtocolError as e:
            logging.warning("router: %s sent bad data: %s", self.describe(),
                            e)
            self._defer_close("protocol error: %s" % (e,))
            return
        except Exception:
            logging.exception("router: read error on %s", self.describe())
            self._defer_close("internal read error")
            return
        if (self._frames and self.connected and not self._handoff
                and self._take_now()):
            self._frames = []
        if self._frames and not self._handoff:
            self._handoff = True
            self.reactor.update_timer(self._handoff_timer, self.reactor.NOW)

    def _take_now(self):
        try:
            return self.owner.take_now(self._frames)
        except Exception:
            logging.exception("router: %s: early reply", self.describe())
            return False

    def _hand_off(self, eventtime):
        self._handoff = False
        if not self.connected:
            return self.reactor.NEVER   # _opened() hands them off
        frames, self._frames = self._frames, []
        if frames and self.sock is not None:
            self.owner.transport_frames(frames)
        return self.reactor.NEVER

    def _set_wake(self, reading=None, writing=None):
        reading = self._reading if reading is None else reading
        writing = self._write_wake if writing is None else writing
        if (reading, writing) != (self._reading, self._write_wake):
            self._reading, self._write_wake = reading, writing
            self.reactor.set_fd_wake(self.fd_handle, reading, writing)

    # What a kind of stream defines
    def _end_of_stream(self):
        """The peer closed: why, in words."""
        return "connection closed by peer"


class UnixTransport(StreamTransport):
    """A local peer's API Unix socket: frames end with 0x03."""
    def __init__(self, reactor, path, owner, first_delay, max_delay):
        StreamTransport.__init__(self, reactor, owner, first_delay,
                                 max_delay)
        self.path = path
        self._splitter = framing.FrameSplitter(MAX_FRAME)

    def describe(self):
        return self.path

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
            self._dial_failed(describe_os_error(e, self.path)
                              if isinstance(e, OSError) else str(e))
            self.nothing_listens = isinstance(e, OSError) and e.errno in (
                errno.ENOENT, errno.ECONNREFUSED)
            if isinstance(e, OSError) and e.errno in (errno.EAGAIN,
                                                      errno.EWOULDBLOCK):
                return eventtime + self.backoff.busy_delay()
            return eventtime + self._retry_delay()
        self._attach(sock)
        self._opened()
        return self.reactor.NEVER

    def _frames_of(self, data):
        return self._splitter.feed(data)

    def _encode(self, frame):
        return frame + framing.ETX

    def _reset_stream(self):
        self._splitter.reset()
