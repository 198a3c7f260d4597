# TLS for a remote link, without I/O: ssl's memory BIOs between the socket
# bytes and the websocket, so the reactor keeps owning a plain non-blocking
# socket and no decrypted byte waits unseen inside OpenSSL.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import binascii, hashlib, ssl

READ_SIZE = 65536


class TlsError(Exception):
    """The TLS session failed: handshake, certificate or a broken record."""


def make_context(cafile=None, fingerprint=None):
    """A client context: the system's CAs, or cafile's; with a pinned
    certificate (SHA-256 of its DER form), that certificate and no other,
    whatever its issuer and names (Moonraker's own are self-signed)."""
    if fingerprint:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=cafile)
    return context


def parse_fingerprint(text):
    """'AB:CD:...' or 'abcd...' (64 hex digits) -> lower-case hex, or
    raises ValueError."""
    digits = text.replace(':', '').strip().lower()
    if len(digits) != 64:
        raise ValueError("a SHA-256 fingerprint has 64 hex digits")
    binascii.unhexlify(digits)
    return digits


class TlsPipe:
    def __init__(self, context, server_hostname, fingerprint=None):
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._in, self._out,
                                     server_hostname=server_hostname)
        self.fingerprint = fingerprint
        self.ready = False
        self._pending = bytearray()    # plaintext written before ready

    def start(self):
        """Begins the handshake; returns the bytes to send."""
        self._handshake()
        return self.take_outgoing()

    def feed(self, data):
        """Bytes read (None at end of stream) -> plaintext (bytes; b''
        is normal). Raises TlsError."""
        if data is None:
            self._in.write_eof()
        else:
            self._in.write(data)
        if not self.ready:
            self._handshake()
            if not self.ready:
                return b''
        return self._read()

    def _handshake(self):
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            return
        except (ssl.SSLError, ssl.CertificateError, OSError) as e:
            raise TlsError(describe(e))
        self._check_pin()
        self.ready = True
        if self._pending:
            self.write(bytes(self._pending))
            del self._pending[:]

    def _check_pin(self):
        if not self.fingerprint:
            return
        der = self._ssl.getpeercert(binary_form=True) or b''
        seen = hashlib.sha256(der).hexdigest()
        if seen != self.fingerprint:
            raise TlsError("certificate fingerprint %s is not the pinned"
                           " one (tls_fingerprint)" % (seen,))

    def _read(self):
        chunks = []
        while True:
            try:
                chunk = self._ssl.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                break     # a clean close: the end of stream comes next
            except (ssl.SSLError, OSError) as e:
                raise TlsError(describe(e))
            if not chunk:
                break
            chunks.append(chunk)
        return b''.join(chunks)

    def write(self, plaintext):
        if not self.ready:
            self._pending += plaintext
            return
        try:
            self._ssl.write(plaintext)
        except (ssl.SSLError, OSError) as e:
            raise TlsError(describe(e))

    def take_outgoing(self):
        return self._out.read()


def describe(e):
    if isinstance(e, ssl.SSLCertVerificationError):
        return "certificate not trusted: %s" % (
            e.verify_message or e.reason or e,)
    if isinstance(e, ssl.SSLError):
        return "TLS error: %s" % (e.reason or e,)
    return "TLS error: %s" % (e,)
