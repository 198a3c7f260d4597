# Framing of the Klipper API socket: JSON objects each followed by 0x03
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import json

ETX = b"\x03"
# Klipper's statuses nest a few levels. Deeper values would be accepted
# here but overflow the stack when klippy encodes them again (a mirror
# served to an API client), which shuts it down.
MAX_DEPTH = 32


class ProtocolError(Exception):
    """The peer sent something that is not Klipper's API protocol."""


def encode(msg):
    # allow_nan=False: a bare NaN token is rejected by msgspec-based peers
    # (mainline drops such a request without reply), so refuse it here.
    return json.dumps(msg, separators=(',', ':'), allow_nan=False).encode(
        'ascii') + ETX


class FrameDecoder:
    """Turns a byte stream into decoded messages (dicts), no I/O."""
    def __init__(self, max_frame):
        self.max_frame = max_frame
        self._partial = b""

    def reset(self):
        self._partial = b""

    def feed(self, data):
        """Returns the list of complete messages; raises ProtocolError."""
        if ETX not in data:
            self._partial += data
            if len(self._partial) > self.max_frame:
                raise ProtocolError("frame larger than %d bytes"
                                    % (self.max_frame,))
            return []
        frames = data.split(ETX)
        frames[0] = self._partial + frames[0]
        self._partial = frames.pop()
        if len(self._partial) > self.max_frame:
            raise ProtocolError("frame larger than %d bytes"
                                % (self.max_frame,))
        msgs = []
        for frame in frames:
            if len(frame) > self.max_frame:
                raise ProtocolError("frame larger than %d bytes"
                                    % (self.max_frame,))
            if not frame.strip():
                continue
            msgs.append(decode(frame))
        return msgs


def decode(frame):
    # The stdlib decoder accepts NaN/Infinity, which stdlib-json peers emit.
    try:
        msg = json.loads(frame)
    except Exception as e:
        # RecursionError for deep nesting, ValueError for bad JSON/UTF-8
        raise ProtocolError("undecodable frame (%s): %.80r"
                            % (type(e).__name__, frame))
    if not isinstance(msg, dict):
        raise ProtocolError("frame is not a JSON object: %.80r" % (frame,))
    if depth(msg) > MAX_DEPTH:
        raise ProtocolError("frame nested deeper than %d levels"
                            % (MAX_DEPTH,))
    return msg


def depth(value):
    """Nesting depth of decoded JSON, without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        if level <= MAX_DEPTH:
            stack.extend((v, level + 1) for v in item
                         if isinstance(v, (dict, list)))
    return deepest
