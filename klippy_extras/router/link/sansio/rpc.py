# Requests of one connection: ids, replies, deadlines and flow control,
# without I/O
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections, heapq
from . import framing
from ...common.gcode_text import clean_text

# Kinds of Error
TIMEOUT = 'timeout'     # no reply before the deadline
LOST = 'lost'           # the connection closed first
REMOTE = 'remote'       # the peer answered with an error
LOCAL = 'local'         # this side could not send it

# Klipper turns every request it reads into a reactor callback and runs all
# that are due in one pass, so a peer flooding it would stall its timers:
# past MAX_IN_FLIGHT, requests wait here, in order.
MAX_IN_FLIGHT = 4
MAX_WAITING = 1000


class Error(str):
    """An error text that knows its kind: code compares kinds, people
    read the text."""
    def __new__(cls, text, kind=REMOTE):
        self = str.__new__(cls, text)
        self.kind = kind
        return self


class NotSent(Exception):
    """A request that was not sent at all; the text says why. Raised by
    every layer (the tracker, the link, the peer) as it is: the caller
    reports it with what it was sending and to whom."""


class RequestTracker:
    """Pending requests of one connection. Callbacks get (result, error):
    exactly one of them is None, and each callback is returned once.
    Frames to write come back from add() and pump(); the caller writes
    them in that order. budget: bytes that may be written but unsent or
    waiting here at once."""
    def __init__(self, budget, max_in_flight=MAX_IN_FLIGHT,
                 max_waiting=MAX_WAITING):
        self.budget = budget
        self.max_in_flight = max_in_flight
        self.max_waiting = max_waiting
        self._next_id = 1
        self._pending = {}          # id -> (callback, deadline, inline)
        self._deadlines = []
        self._in_flight = set()
        self._waiting = collections.deque()   # (id, frame)
        self._waiting_bytes = 0

    def __len__(self):
        return len(self._pending)

    def waiting(self):
        return len(self._waiting)

    def add(self, method, params, callback, deadline, buffered,
            priority=False, inline=False):
        """Returns (id, frame to write now or None). Raises NotSent.
        buffered: bytes written and not yet sent. Priority requests
        (handshake, keepalive) never wait behind others. inline: the
        reply's callback may run in the fd callback (see resolve)."""
        if not priority and len(self._waiting) >= self.max_waiting:
            raise NotSent("%d requests already waiting for this peer"
                          % (len(self._waiting),))
        req_id = self._next_id
        try:
            frame = framing.encode_request(req_id, method, params)
        except (TypeError, ValueError) as e:
            raise NotSent("cannot encode message: %s" % (e,))
        self._check_budget(buffered, len(frame))
        self._next_id += 1
        self._pending[req_id] = (callback, deadline, inline)
        heapq.heappush(self._deadlines, (deadline, req_id))
        if priority or (len(self._in_flight) < self.max_in_flight
                        and not self._waiting):
            self._in_flight.add(req_id)
            return req_id, frame
        self._waiting.append((req_id, frame))
        self._waiting_bytes += len(frame)
        return req_id, None

    def _check_budget(self, buffered, size):
        queued = buffered + self._waiting_bytes
        if queued + size > self.budget:
            raise NotSent("send buffer full (%d bytes): the peer is not"
                          " reading its socket" % (queued,))

    def pump(self, buffered):
        """Frames that may be written now, and [(callback, error)] of
        waiting requests that no longer fit the budget."""
        frames, failed = [], []
        while self._waiting and len(self._in_flight) < self.max_in_flight:
            req_id, frame = self._waiting.popleft()
            self._waiting_bytes -= len(frame)
            entry = self._pending.get(req_id)
            if entry is None:
                continue   # timed out while waiting here
            if buffered + len(frame) > self.budget:
                del self._pending[req_id]
                failed.append((entry[0], Error(
                    "send buffer full (%d bytes): the peer is not reading"
                    " its socket" % (buffered,), LOCAL)))
                continue
            buffered += len(frame)
            self._in_flight.add(req_id)
            frames.append(frame)
        return frames, failed

    def resolve(self, msg, only_inline=False):
        """Returns (callback, result, error) for a reply to a pending
        request, None for anything else (with only_inline, also for a
        reply whose request was not added inline: see Link.take_now)."""
        req_id = msg.get('id')
        entry = self._pending.get(req_id) if type(req_id) is int else None
        if entry is None or ('result' not in msg and 'error' not in msg):
            return None
        callback, _, inline = entry
        if only_inline and not inline:
            return None
        del self._pending[req_id]
        self._in_flight.discard(req_id)
        self._drop_answered()
        if 'error' in msg:
            return callback, None, Error(error_text(msg['error']), REMOTE)
        return callback, msg['result'], None

    def next_deadline(self, default):
        self._drop_answered()
        heap = self._deadlines
        return heap[0][0] if heap else default

    def _drop_answered(self):
        # Deadlines leave the heap from its top, once answered: replies
        # mostly come oldest first, so it holds about what is pending
        heap = self._deadlines
        while heap and heap[0][1] not in self._pending:
            heapq.heappop(heap)

    def expire(self, now):
        """Pops requests whose deadline passed: [(callback, error)]."""
        out = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, req_id = heapq.heappop(heap)
            entry = self._pending.pop(req_id, None)
            if entry is not None:
                self._in_flight.discard(req_id)
                out.append((entry[0], Error("timed out", TIMEOUT)))
        return out

    def fail_all(self, reason):
        """The connection closed: [(callback, error)] of every request."""
        error = Error("connection lost (%s)" % (reason,), LOST)
        out = [(entry[0], error) for entry in self._pending.values()]
        self._pending.clear()
        del self._deadlines[:]
        self._in_flight.clear()
        self._waiting.clear()
        self._waiting_bytes = 0
        return out


def error_text(error):
    """A peer's error as one line of text (it ends up in console lines
    and G-code errors here)."""
    # Klipper replies {"error": "WebRequestError", "message": "..."}
    if isinstance(error, dict):
        msg = error.get('message')
        if isinstance(msg, str) and msg.strip():
            return clean_text(msg.strip())
    return clean_text("%.200s" % (error,)).strip() or "unknown error"
