# The peers of this instance, by name, and its link to itself: what the
# router's parts share instead of the router.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
from ..common import gcode_text


class PeerTable(dict):
    """name -> Peer; own_name is this instance's name, self_peer its link
    to its own API socket (None without one)."""
    def __init__(self, own_name):
        dict.__init__(self)
        self.own_name = own_name
        self.self_peer = None
        self.shared_file = False   # a mesh file lists this instance too

    def lookup(self, name):
        """The Peer for a TARGET value, or None (names are case-free)."""
        # A name as configured is one dict lookup, on every hop
        peer = self.get(name)
        if peer is not None:
            return peer
        return self.get(gcode_text.check_name(name) or '')

    def note_failure(self, text, name):
        """A failure reported about a peer: its last_failure."""
        peer = self.get(name or '')
        if peer is not None:
            peer.note_failure(text)

    def with_self(self):
        """Every peer, and the link to this instance's own socket."""
        links = list(self.values())
        if self.self_peer is not None:
            links.append(self.self_peer)
        return links
