# A client websocket to Moonraker's /klippysocket bridge, without I/O
#
# Bytes from the network go in, events come out (opened, a message, a
# rejection, closed); what must go back (the upgrade request, answers to
# pings and closes, our messages) is collected in `outgoing`. wsproto does
# the protocol; this adds what a peer link needs around it: one message is
# one Klipper API frame, messages are bounded while they arrive, the first
# close code is kept, and errors are one exception type.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections

# Events
Opened = collections.namedtuple('Opened', '')
Message = collections.namedtuple('Message', 'frame')   # bytes, JSON text
Rejected = collections.namedtuple('Rejected', 'status body')
Closed = collections.namedtuple('Closed', 'code reason')
Pong = collections.namedtuple('Pong', '')

MAX_REJECT_BODY = 2048       # of an HTTP refusal, kept for the message


class WsError(Exception):
    """The server broke the websocket protocol, or sent too much."""


def load_wsproto():
    """The wsproto module, or None when it is not installed."""
    try:
        import wsproto, wsproto.events   # noqa: F401
    except ImportError:
        return None
    return wsproto


class WsClient:
    def __init__(self, host, target, headers, max_message):
        wsproto = load_wsproto()
        if wsproto is None:
            raise WsError("wsproto is not installed")
        self._ev = wsproto.events
        self._conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self._open_state = wsproto.connection.ConnectionState.OPEN
        self.max_message = max_message
        self.outgoing = bytearray()
        self.closed = None          # the first Closed seen
        self._parts = []
        self._size = 0
        self._reject = None
        # No Origin (tornado would check it), no extensions (Moonraker
        # has compression off)
        self._send(self._ev.Request(host=host, target=target,
                                    extra_headers=list(headers)))
        self._handlers = {
            self._ev.AcceptConnection: lambda e: [Opened()],
            self._ev.RejectConnection: self._on_reject,
            self._ev.RejectData: self._on_reject_data,
            self._ev.TextMessage: self._on_message,
            self._ev.BytesMessage: self._on_message,
            self._ev.Ping: self._on_ping,
            self._ev.Pong: lambda e: [Pong()],
            self._ev.CloseConnection: self._on_close}

    @property
    def is_open(self):
        return self._conn.state == self._open_state

    def _send(self, event):
        try:
            self.outgoing += self._conn.send(event)
        except Exception as e:     # wsproto's LocalProtocolError
            raise WsError("cannot send %s: %s" % (type(event).__name__, e))

    # Network side
    def receive(self, data):
        """Bytes read (None at end of stream) -> list of events."""
        if self.closed is not None:
            return []
        # Never feed b'': h11 takes it as the end of the stream
        if data is not None and not data:
            return []
        try:
            self._conn.receive_data(data)
            events = []
            for event in self._conn.events():
                handler = self._handlers.get(type(event))
                if handler is not None:
                    events.extend(handler(event))
        except WsError:
            raise
        except Exception as e:     # wsproto's RemoteProtocolError
            raise WsError("bad websocket data: %s" % (e,))
        return events

    def _on_reject(self, event):
        self._reject = (event.status_code, bytearray())
        if event.has_body:
            return []
        return self._rejected()

    def _on_reject_data(self, event):
        if self._reject is None:
            return []
        body = self._reject[1]
        body += event.data[:max(0, MAX_REJECT_BODY - len(body))]
        return self._rejected() if event.body_finished else []

    def _rejected(self):
        status, body = self._reject
        self._reject = None
        self.closed = Closed(1006, "refused")
        return [Rejected(status, bytes(body).decode('utf-8', 'replace'))]

    def _on_message(self, event):
        data = event.data
        if isinstance(data, str):
            data = data.encode('utf-8')
        self._size += len(data)
        if self._size > self.max_message:
            raise WsError("message larger than %d bytes" % (self.max_message,))
        self._parts.append(data)
        if not event.message_finished:
            return []
        frame = b''.join(self._parts)
        self._parts, self._size = [], 0
        return [Message(frame)]

    def _on_ping(self, event):
        if self.is_open:
            self._send(event.response())
        return []

    def _on_close(self, event):
        if self.closed is None:
            self.closed = Closed(event.code, event.reason or '')
        try:
            self._send(event.response())
        except WsError:
            pass   # already closing on our side
        return [self.closed]

    # Our side
    def send_message(self, frame):
        """One API frame (JSON text as bytes). A binary message: the
        bridge takes either, and this saves decoding and encoding it."""
        self._send(self._ev.BytesMessage(data=frame))

    def ping(self, payload=b'router'):
        if self.is_open:
            self._send(self._ev.Ping(payload=payload))

    def close(self, code=1000, reason=''):
        if self.is_open:
            self._send(self._ev.CloseConnection(code=code, reason=reason))

    def take_outgoing(self):
        data = bytes(self.outgoing)
        del self.outgoing[:]
        return data
