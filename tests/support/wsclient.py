# A plain, blocking websocket client of Moonraker's /klippysocket bridge
# (wsproto over a socket): what any API client would do, for the tests and
# the remote-hop benchmark's baseline. Not the module's code path.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import itertools, json, socket
import wsproto
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection,
                            Ping, RejectConnection, Request, TextMessage)


class Refused(Exception):
    def __init__(self, status):
        Exception.__init__(self, "HTTP %d" % (status,))
        self.status = status


class BridgeClient:
    def __init__(self, host, port, key=None, target='/klippysocket',
                 timeout=10.):
        self.sock = socket.create_connection((host, port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        headers = [(b'X-Api-Key', key.encode())] if key else []
        self.sock.sendall(self.ws.send(Request(
            host='%s:%d' % (host, port), target=target,
            extra_headers=headers)))
        self._ids = itertools.count(1)
        self._parts = []
        self._queue = []
        self.pushed = []
        self._wait(lambda: self._open is not None)

    _open = None

    def _pump(self):
        data = self.sock.recv(65536)
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self._open = True
            elif isinstance(event, RejectConnection):
                raise Refused(event.status_code)
            elif isinstance(event, (TextMessage, BytesMessage)):
                self._parts.append(event.data if isinstance(event.data, str)
                                   else event.data.decode())
                if event.message_finished:
                    self._queue.append(json.loads(''.join(self._parts)))
                    self._parts = []
            elif isinstance(event, Ping):
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                raise ConnectionError("closed: %s" % (event.code,))
        if not data:
            raise ConnectionError("closed")

    def _wait(self, predicate):
        while not predicate():
            self._pump()

    def request(self, method, params=None):
        """The reply's result; raises RuntimeError with the error."""
        rid = next(self._ids)
        self.sock.sendall(self.ws.send(TextMessage(data=json.dumps(
            {'id': rid, 'method': method, 'params': params or {}}))))
        while True:
            for msg in self._queue:
                if msg.get('id') == rid:
                    self._queue.remove(msg)
                    if 'error' in msg:
                        raise RuntimeError(msg['error'].get('message'))
                    return msg.get('result')
            self._queue, pushed = [], [m for m in self._queue
                                       if 'id' not in m]
            self.pushed.extend(pushed)
            self._pump()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
