# A peer on another host: its Klipper's API through Moonraker's
# /klippysocket bridge, which gives each websocket its own API connection
# (one message is one API frame). The link, session and endpoints are the
# local ones; only the stream differs: TCP, optionally TLS, a websocket.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections, errno, logging, os, socket, threading
from .sansio import framing, tls, websocket
from ..common.timers import drop_timer
from .transport import (MAX_FRAME, StreamTransport, TransportError,
                        describe_os_error)

CONNECT_TIMEOUT = 5.    # s for TCP, TLS and the upgrade together
KEEPALIVE = 2.          # s between our websocket pings
SILENCE_LIMIT = 6.      # s without a byte from Moonraker: the path is gone
REFUSED_RETRY = 10.     # s before trying a refused key or path again
TICK = .5

INSTALL_HINT = ("remote peers need the Python packages wsproto and h11 in"
                " Klipper's virtualenv: run this project's install.sh again"
                " (it installs them), or ~/klippy-env/bin/pip install"
                " wsproto h11")

RemoteOptions = collections.namedtuple(
    'RemoteOptions', 'url tls host port target api_key api_key_file'
    ' context fingerprint')

# Phases of one connection (before TCP: a name lookup, with no phase)
TCP, UPGRADE, OPEN = 'tcp', 'upgrade', 'open'


def parse_url(text):
    """'ws://host:7125/klippysocket' -> (tls, host, port, target); raises
    ValueError. The path defaults to /klippysocket."""
    text = text.strip()
    scheme, sep, rest = text.partition('://')
    if not sep or scheme.lower() not in ('ws', 'wss'):
        raise ValueError("use ws://host:port/klippysocket (or wss://)")
    use_tls = scheme.lower() == 'wss'
    hostport, slash, path = rest.partition('/')
    target = '/' + path if slash else '/klippysocket'
    if not hostport or '@' in hostport:
        raise ValueError("no host in the URL")
    if hostport.startswith('['):
        host, close, portpart = hostport[1:].partition(']')
        if not close or (portpart and not portpart.startswith(':')):
            raise ValueError("bad IPv6 address in the URL")
        portpart = portpart[1:]
    else:
        host, _, portpart = hostport.partition(':')
    port = 443 if use_tls else 80
    if portpart:
        if not portpart.isdigit() or not 0 < int(portpart) < 65536:
            raise ValueError("bad port %r" % (portpart,))
        port = int(portpart)
    if not host or any(c.isspace() for c in text) or not _ascii(text):
        raise ValueError("the URL must be ASCII without spaces")
    return use_tls, host, port, target


def _ascii(text):
    try:
        text.encode('ascii')
    except UnicodeEncodeError:
        return False
    return True


def numeric_address(host):
    """(family, host) when host is an IP address, else None."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family
        except (OSError, ValueError):
            pass
    return None


def resolve_off_reactor(reactor, host, port, done):
    """getaddrinfo blocks and has no non-blocking form in the standard
    library: one short thread looks the name up, and done(addresses, or
    the error in words) runs on the reactor."""
    def work():
        try:
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
            result = [(info[0], info[4]) for info in infos]
        except Exception as e:
            result = "cannot resolve %s: %s" % (host, e)
        try:
            reactor.register_async_callback(lambda eventtime: done(result))
        except Exception:
            pass    # klippy is going away
    thread = threading.Thread(target=work, name='router-resolve')
    thread.daemon = True
    thread.start()


def host_header(host, port):
    return ('[%s]:%d' if ':' in host else '%s:%d') % (host, port)


def read_key(options):
    """The API key to send: api_key, or the first line of api_key_file
    (read at every dial, so a new key needs no restart)."""
    if not options.api_key_file:
        return options.api_key
    with open(options.api_key_file) as f:
        return f.readline().strip()


def rejection_text(status, body):
    """An HTTP refusal of the upgrade, for ROUTER_PRINTERS_LIST; and how
    long to wait before asking again."""
    if status in (401, 403):
        return ("Moonraker refused the API key (HTTP %d): check api_key or"
                " api_key_file, or add this host to trusted_clients in"
                " [authorization] there" % (status,)), REFUSED_RETRY
    if status == 503:
        return ("Moonraker is up but its Klipper is not (HTTP 503)"), 0.
    if status == 404:
        return ("no Klipper bridge at this URL (HTTP 404): Moonraker 0.8 or"
                " newer serves it at /klippysocket"), REFUSED_RETRY
    return ("upgrade refused (HTTP %d): %.100s" % (status, body.strip())
            ), REFUSED_RETRY


class WebSocketTransport(StreamTransport):
    def __init__(self, reactor, remote, owner, first_delay, max_delay):
        StreamTransport.__init__(self, reactor, owner, first_delay,
                                 max_delay)
        self.remote = remote
        self._ws = self._tls = None
        self._phase = None
        self._resolving = False
        self._deadline = self._heard = self._pinged = 0.
        self._retry_at = reactor.NEVER
        self._tick_timer = reactor.register_timer(self._tick)

    def describe(self):
        return self.remote.url

    def stop(self):
        StreamTransport.stop(self)
        self._tick_timer = drop_timer(self.reactor, self._tick_timer)

    # Dialing: resolve (off the reactor), connect, TLS, upgrade
    def _connect_event(self, eventtime):
        if self.stopped or self.sock is not None or self._resolving:
            return self.reactor.NEVER
        # What this timer returns is its next waketime: a failed dial
        # sets it (an update_timer() from inside would be overwritten)
        self._retry_at = self.reactor.NEVER
        family = numeric_address(self.remote.host)
        try:
            if family is not None:
                self._dial([(family, (self.remote.host, self.remote.port))])
            else:
                self._resolve()
        except Exception as e:
            # Never out of a timer: that would shut the printer down
            logging.exception("router: %s: dial", self.describe())
            self._resolving = False
            self._retry("cannot dial: %s" % (e,))
        return self._retry_at

    def _resolve(self):
        self._resolving = True
        resolve_off_reactor(self.reactor, self.remote.host, self.remote.port,
                            self._resolved)

    def _resolved(self, result):
        self._resolving = False
        if self.stopped or self.sock is not None:
            return
        if isinstance(result, str) or not result:
            self._retry(result or "cannot resolve %s: no address"
                        % (self.remote.host,))
            return
        try:
            self._dial(result)
        except Exception as e:   # a reactor callback: nothing may escape
            logging.exception("router: %s: dial", self.describe())
            self._retry("cannot dial: %s" % (e,))

    def _retry(self, error, retry_after=0.):
        self._dial_failed(error)
        when = self._schedule_dial(retry_after)
        if when is not None:
            self._retry_at = when

    def _dial(self, addresses):
        family, address = addresses[0]
        sock = None
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex(address)
        except (OSError, ValueError) as e:
            if sock is not None:
                sock.close()
            self._retry(describe_os_error(e) if isinstance(e, OSError)
                        else str(e))
            return
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._retry(describe_os_error(OSError(err, os.strerror(err))))
            return
        self._attach(sock)
        self._phase = TCP
        self._set_wake(writing=True)
        self._deadline = self.reactor.monotonic() + CONNECT_TIMEOUT
        self.reactor.update_timer(self._tick_timer, self.reactor.NOW)

    def _read_event(self, eventtime):
        if self._phase == TCP:
            self._write_event(eventtime)   # a refusal wakes reading first
        else:
            StreamTransport._read_event(self, eventtime)

    def _writable(self):
        if self._phase == TCP:
            self._tcp_connected()    # the connect completed, or failed
        else:
            self._flush()

    def _tcp_connected(self):
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._defer_close(describe_os_error(OSError(err,
                                                        os.strerror(err))))
            return
        r = self.remote
        headers = [(b'User-Agent', b'klipper-router')]
        try:
            key = read_key(r)
        except OSError as e:
            self._defer_close("cannot read api_key_file: %s" % (
                e.strerror or e,), REFUSED_RETRY)
            return
        if key:
            headers.append((b'X-Api-Key', key.encode('ascii', 'replace')))
        self._phase = UPGRADE
        self._ws = websocket.WsClient(host_header(r.host, r.port), r.target,
                                      headers, MAX_FRAME)
        if r.tls:
            self._tls = tls.TlsPipe(r.context, r.host, r.fingerprint)
            self._send_buf += self._tls.start()
        self._pump_out()

    def _pump_out(self):
        data = self._ws.take_outgoing()
        if self._tls is not None:
            if data:
                self._tls.write(data)
            data = self._tls.take_outgoing()
        if data:
            self._send_buf += data
        if self._send_buf and self.sock is not None:
            self._flush()

    # Bytes in (from the read fd callback)
    def _frames_of(self, data):
        self._heard = self.reactor.monotonic()
        try:
            if self._tls is not None:
                data = self._tls.feed(data)
            events = self._ws.receive(data)
        except tls.TlsError as e:
            self._defer_close(str(e), REFUSED_RETRY)
            return []
        except websocket.WsError as e:
            raise framing.ProtocolError(str(e))
        frames = [e.frame for e in events
                  if isinstance(e, websocket.Message)]
        for event in events:
            self._on_event(event)
        self._pump_out()
        return frames

    def _on_event(self, event):
        if isinstance(event, websocket.Opened):
            self._phase = OPEN
            self._pinged = self._heard
            gen = self.generation
            def opened(eventtime):
                if gen == self.generation and self.sock is not None:
                    self._opened()
            self.reactor.register_callback(opened)
        elif isinstance(event, websocket.Rejected):
            self._defer_close(*rejection_text(event.status, event.body))
        elif isinstance(event, websocket.Closed):
            self._defer_close("closed by Moonraker: %s (%d)" % (
                event.reason or 'no reason', event.code))

    def _end_of_stream(self):
        if self._phase == OPEN:
            return "connection lost (Moonraker or its host went away)"
        return "connection closed while %s" % (
            'upgrading' if self._phase == UPGRADE else 'connecting')

    # Deadlines and keepalive
    def _tick(self, eventtime):
        try:
            return self._check(eventtime)
        except Exception:
            logging.exception("router: %s: keepalive", self.describe())
            self._defer_close("internal error")
            return self.reactor.NEVER

    def _check(self, eventtime):
        if self.sock is None or self._closing:
            return self.reactor.NEVER
        if self._phase != OPEN:
            if eventtime > self._deadline:
                self.close("no answer within %.0f s (host down or"
                           " unreachable?)" % (CONNECT_TIMEOUT,))
                return self.reactor.NEVER
            return eventtime + TICK
        if not self._reading:
            self._heard = eventtime    # paused by us, not silent
        if eventtime - self._heard > SILENCE_LIMIT:
            self.close("nothing heard for %.0f s (network down?)"
                       % (SILENCE_LIMIT,))
            return self.reactor.NEVER
        if eventtime - self._pinged >= KEEPALIVE:
            self._pinged = eventtime
            try:
                self._ws.ping()
                self._pump_out()
            except (websocket.WsError, tls.TlsError) as e:
                self.close(str(e))
                return self.reactor.NEVER
        return eventtime + TICK

    # Frames out
    def _encode(self, frame):
        """Raises TransportError (the link's request then fails with the
        connection) when the websocket is closing: Moonraker's close came
        in and the deferred close has not run yet."""
        try:
            self._ws.send_message(frame)
            data = self._ws.take_outgoing()
            if self._tls is not None:
                self._tls.write(data)
                data = self._tls.take_outgoing()
        except (websocket.WsError, tls.TlsError) as e:
            raise TransportError(str(e))
        return data

    def _close(self, reason, notify, retry_after=0.):
        if self._phase == OPEN and self.sock is not None:
            try:   # a goodbye, if it fits at once
                self._ws.close(1000)
                self._pump_out()
            except Exception:
                pass
        StreamTransport._close(self, reason, notify, retry_after)

    def _reset_stream(self):
        self._ws = self._tls = None
        self._phase = None
