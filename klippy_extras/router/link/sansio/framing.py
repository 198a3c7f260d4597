# Framing of the Klipper API socket: JSON objects each followed by 0x03
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import json

ETX = b"\x03"
# Klipper's statuses nest a few levels. Deeper values would be accepted
# here but overflow the stack when klippy encodes them again (a mirror
# served to an API client), which shuts it down.
MAX_DEPTH = 32
# A frame is decoded in one piece on klippy's reactor, so what one frame
# may cost is bounded: by its size, and by its number of JSON tokens (what
# json.loads spends its time on: a long string is cheap, a million tiny
# arrays or floats are not). Real replies are far below both: the full
# configfile status of a large config is mostly strings.
MAX_TOKENS = 250000
# Python's int() is quadratic in the number of digits (and since 3.11
# refuses more than 4300): no JSON number from Klipper is this long.
MAX_DIGITS = 40
_DIGITS = b'0123456789'
_NOT_TOKEN = bytes(c for c in range(256)
                   if c not in _DIGITS + b',:\\[{.')
_DIGIT_RUN = b'0' * (MAX_DIGITS + 1)
_DIGITS_TO_ZERO = bytes.maketrans(_DIGITS, b'0' * 10)
_CURLY_TO_SQUARE = bytes.maketrans(b'{}', b'[]')
_NOT_BRACKET = bytes(c for c in range(256) if c not in b'[]{}')


class ProtocolError(Exception):
    """The peer sent something that is not Klipper's API protocol."""


# allow_nan=False: a bare NaN token is rejected by msgspec-based peers
# (mainline drops such a request without reply), so it is refused here.
# One encoder, holding no state between calls: json.dumps with options
# builds a new one for every message.
_ENCODER = json.JSONEncoder(separators=(',', ':'), allow_nan=False)


def encode(msg):
    """The JSON text of a message (a frame, without its terminator)."""
    return _ENCODER.encode(msg).encode('ascii')


class Encoded:
    """The params of several requests (an event sent to each neighbor),
    encoded once, when first sent: value is the object itself."""
    __slots__ = ('value', '_text')

    def __init__(self, value):
        self.value = value
        self._text = None

    def text(self):
        """Raises TypeError or ValueError, as encode() does."""
        if self._text is None:
            self._text = encode(self.value)
        return self._text


def encode_request(req_id, method, params):
    """The frame of a request; params may be Encoded."""
    if isinstance(params, Encoded):
        return b'{"id":%d,"method":%s,"params":%s}' % (
            req_id, encode(method), params.text())
    return encode({'id': req_id, 'method': method, 'params': params})


class FrameSplitter:
    """Cuts a byte stream into frames (bytes), without decoding them: the
    fd callback only moves bytes, decoding happens later, a frame at a
    time. Linear in the bytes fed, however they are split."""
    def __init__(self, max_frame):
        self.max_frame = max_frame
        self._partial = bytearray()

    def reset(self):
        self._partial = bytearray()

    def feed(self, data):
        """Returns the list of complete frames; raises ProtocolError."""
        end = data.find(ETX)
        if end == len(data) - 1 and not self._partial:
            # One whole frame, as most reads bring
            self._check(end)
            frame = data[:end]
            return [frame] if frame.strip() else []
        if end < 0:
            self._partial += data
            self._check(len(self._partial))
            return []
        self._partial += data[:end]
        first = bytes(self._partial)
        frames = data[end + 1:].split(ETX)
        self._partial = bytearray(frames.pop())
        frames.insert(0, first)
        for frame in frames:
            self._check(len(frame))
        self._check(len(self._partial))
        return [f for f in frames if f.strip()]

    def _check(self, size):
        if size > self.max_frame:
            raise ProtocolError("frame larger than %d bytes"
                                % (self.max_frame,))


def tokens(frame):
    """An upper bound of the work to decode a frame, in JSON tokens: its
    separators, containers (counted twice: made, then freed), number parts
    and escapes. They are also counted inside strings, which only makes
    real frames look a little dearer than they are."""
    kept = frame.translate(None, _NOT_TOKEN)   # one pass over the frame
    singles = (kept.count(b',') + kept.count(b':') + kept.count(b'\\'))
    doubles = kept.count(b'[') + kept.count(b'{') + kept.count(b'.')
    digits = len(kept) - singles - doubles
    return singles + 2 * doubles + digits // 8


def check_cost(frame):
    """Refuses, before decoding, a frame that would take long to decode.
    A small frame is cheap whatever it holds."""
    if len(frame) <= 4096:
        return
    count = tokens(frame)
    if count > MAX_TOKENS:
        raise ProtocolError("frame of %d bytes has about %d JSON tokens"
                            " (limit %d)" % (len(frame), count, MAX_TOKENS))
    if _DIGIT_RUN in frame.translate(_DIGITS_TO_ZERO):
        raise ProtocolError("frame holds a run of more than %d digits"
                            % (MAX_DIGITS,))


def decode(frame):
    check_cost(frame)
    # Nesting needs an opening bracket per level: most frames have fewer
    # than MAX_DEPTH in all (two counts, far cheaper than depth())
    if (frame.count(b'[') + frame.count(b'{') > MAX_DEPTH
            and depth(frame) > MAX_DEPTH):
        raise ProtocolError("frame nested deeper than %d levels"
                            % (MAX_DEPTH,))
    # The stdlib decoder accepts NaN/Infinity, which stdlib-json peers emit.
    try:
        msg = json.loads(frame)
    except Exception as e:
        # ValueError for bad JSON or UTF-8
        raise ProtocolError("undecodable frame (%s): %.80r"
                            % (type(e).__name__, frame))
    if not isinstance(msg, dict):
        raise ProtocolError("frame is not a JSON object: %.80r" % (frame,))
    return msg


def depth(frame):
    """How deep the containers of a JSON text nest, up to MAX_DEPTH + 1,
    with bytes operations only (no Python loop over its elements). An
    invalid text may give any figure; json.loads refuses it anyway."""
    # Strings hold no structure: drop escaped quotes and backslashes,
    # then every other piece between quotes is a string's content.
    plain = frame.replace(b'\\\\', b'').replace(b'\\"', b'')
    brackets = b''.join(plain.split(b'"')[::2]).translate(
        _CURLY_TO_SQUARE, _NOT_BRACKET)
    # Each pass removes the innermost containers, one level
    for level in range(MAX_DEPTH + 1):
        if not brackets:
            return level
        shorter = brackets.replace(b'[]', b'')
        if len(shorter) == len(brackets):
            return MAX_DEPTH + 1   # unbalanced: not JSON
        brackets = shorter
    return MAX_DEPTH + 1
