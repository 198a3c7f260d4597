# Klipper's API protocol over one transport: requests with replies and
# deadlines, pushed messages, decoding in slices. On klippy's reactor.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections, logging
from .sansio import framing, rpc
from ..common.timers import drop_timer
from .transport import MAX_FRAME, MAX_SEND_BUFFER, TransportError

MAX_INBOX = 2 * MAX_FRAME    # received, not decoded: then stop reading
INBOX_SLICE = .005           # s of decoding before yielding
INLINE_MAX = 4096            # bytes of a reply take_now() may decode


def wait_reply(reactor, send, timeout):
    """Calls send(callback) and waits, yielding to the reactor, for
    callback(result, error); returns (result, error). Whatever send asks
    for times out by its own deadline: the margin of 1 s only guards
    that."""
    completion = reactor.completion()
    def wake(result, error):
        completion.complete((result, error))
    send(wake)
    return completion.wait(reactor.monotonic() + timeout + 1., (
        None, rpc.Error("timed out", rpc.TIMEOUT)))


class Link:
    """The listener has link_up(), link_down(reason) and link_push(msg);
    request callbacks get (result, error), error an rpc.Error. Every one
    of them runs from a reactor callback, never from an fd callback."""
    def __init__(self, reactor, transport, listener):
        self.reactor = reactor
        self.transport = transport
        self.listener = listener
        self._requests = rpc.RequestTracker(MAX_SEND_BUFFER)
        self._inbox = collections.deque()   # frames, decoded in order
        self._inbox_bytes = 0
        self._inbox_scheduled = False
        self._decoded = None   # (frame, msg) take_now() decoded, not took
        self._timeout_timer = reactor.register_timer(self._timeout_event)
        self._timer_at = reactor.NEVER
        transport.owner = self

    @property
    def connected(self):
        """Is the transport's connection up?"""
        return self.transport.connected

    def start(self):
        self.transport.start()

    @property
    def last_error(self):
        """Why the connection last failed or closed, or ''."""
        return self.transport.last_error

    def stop(self):
        """Must never raise (klippy:disconnect)."""
        self.transport.stop()
        self._timeout_timer = drop_timer(self.reactor, self._timeout_timer)

    def close(self, reason):
        self.transport.close(reason)

    def note_healthy(self):
        self.transport.note_healthy()

    # From the transport
    def transport_up(self):
        self._call(self.listener.link_up)

    def transport_down(self, reason):
        self._inbox.clear()
        self._inbox_bytes = 0
        self._decoded = None
        for callback, error in self._requests.fail_all(reason):
            self._call(callback, None, error)
        self._call(self.listener.link_down, reason)

    def take_now(self, frames):
        """From the fd callback, before the hand-off: a lone small reply
        to a request made inline (its callback only wakes a waiting
        command, ROUTER_GCODE_SCRIPT WAIT=1, or counts a neighbor's
        acknowledgement: nothing in it can close an fd) is taken at once,
        which saves a
        reactor pass on every such hop. Anything else waits for the
        hand-off, in order, decoded once. True when taken."""
        if (self._inbox or self._inbox_scheduled or len(frames) != 1
                or len(frames[0]) > INLINE_MAX or self._requests.waiting()):
            return False
        try:
            msg = framing.decode(frames[0])
        except framing.ProtocolError:
            return False
        resolved = self._requests.resolve(msg, only_inline=True)
        if resolved is None:
            # The hand-off dispatches it without decoding it again
            self._decoded = (frames[0], msg)
            return False
        callback, result, error = resolved
        self._call(callback, result, error)
        self._replies_taken()
        return True

    def transport_frames(self, frames):
        self._inbox.extend(frames)
        self._inbox_bytes += sum(len(f) for f in frames)
        if self._inbox_bytes > MAX_INBOX:
            self.transport.pause_reading(True)
        if not self._inbox_scheduled:
            self._process_inbox(self.reactor.monotonic())

    # Decoding and dispatch, in slices: a peer sending much costs this
    # instance at most INBOX_SLICE at a time.
    def _process_inbox(self, eventtime):
        self._inbox_scheduled = False
        gen = self.transport.generation
        inbox = self._inbox
        end = self.reactor.monotonic() + INBOX_SLICE
        while inbox and gen == self.transport.generation:
            if self.reactor.monotonic() > end:
                self._inbox_scheduled = True
                self.reactor.register_callback(self._process_inbox)
                break
            frame = inbox.popleft()
            self._inbox_bytes -= len(frame)
            try:
                msg = self._decode(frame)
            except framing.ProtocolError as e:
                logging.warning("router: %s sent bad data: %s",
                                self.transport.describe(), e)
                self.transport.close("protocol error: %s" % (e,))
                return
            self._dispatch(msg)
        if gen == self.transport.generation:
            if self._inbox_bytes <= MAX_INBOX:
                self.transport.pause_reading(False)
            self._pump()
            self._replies_taken()

    def _decode(self, frame):
        decoded, self._decoded = self._decoded, None
        if decoded is not None and decoded[0] is frame:
            return decoded[1]
        return framing.decode(frame)

    def _dispatch(self, msg):
        if 'id' in msg:
            resolved = self._requests.resolve(msg)
            if resolved is not None:
                callback, result, error = resolved
                self._call(callback, result, error)
                return
            if 'method' not in msg:
                # A reply to a request that already timed out
                logging.debug("router: %s: stray reply %.200r",
                              self.transport.describe(), msg)
                return
        self._call(self.listener.link_push, msg)

    def _call(self, func, *args):
        try:
            func(*args)
        except framing.ProtocolError as e:
            logging.warning("router: %s: %s", self.transport.describe(), e)
            if self.transport.connected:
                self.transport.close("protocol error: %s" % (e,))
        except Exception:
            logging.exception("router: internal error handling %s",
                              self.transport.describe())

    # Sending
    def request(self, method, params, callback, timeout, priority=False,
                inline=False):
        """Sends a request; callback(result, error) is called exactly once,
        from a reactor callback, unless this raises rpc.NotSent. Beyond
        rpc.MAX_IN_FLIGHT it waits, in order; priority requests
        (handshake, keepalive) never wait behind others. inline: a lone
        small reply may be taken in the fd callback (take_now), so the
        callback must not close an fd."""
        if not self.transport.connected:
            raise rpc.NotSent("not connected")
        deadline = self.reactor.monotonic() + timeout
        req_id, frame = self._requests.add(
            method, params, callback, deadline, self.transport.buffered(),
            priority, inline)
        if frame is not None:
            self._write(frame)
        if deadline < self._timer_at:
            self._set_timer(deadline)
        return req_id

    def _write(self, frame):
        try:
            self.transport.send(frame)
        except TransportError:
            pass   # closing: the request fails with the connection

    def _pump(self):
        frames, failed = self._requests.pump(self.transport.buffered())
        for frame in frames:
            self._write(frame)
        for callback, error in failed:
            self._call(callback, None, error)

    # The timer fires by the earliest deadline. Firing early is harmless
    # (it finds nothing due and sets itself again), so a request moves it
    # only nearer and a reply only when nothing is left pending: on a hop,
    # one reactor call each way.
    def _set_timer(self, when):
        if self._timeout_timer is not None:
            self._timer_at = when
            self.reactor.update_timer(self._timeout_timer, when)

    def _replies_taken(self):
        if self._timer_at != self.reactor.NEVER and not len(self._requests):
            self._set_timer(self.reactor.NEVER)

    def _timeout_event(self, eventtime):
        for callback, error in self._requests.expire(eventtime):
            self._call(callback, None, error)
        self._pump()
        self._timer_at = self._requests.next_deadline(self.reactor.NEVER)
        return self._timer_at
