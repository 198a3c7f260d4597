# discover: in [router]: dial every API socket that matches a glob, now
# and when new ones appear, and learn each one's name from its router.
#
# A socket is probed once per socket file (its inode and time): one whose
# Klipper runs no module, runs another mesh, or gives a name already used
# is left alone until the file changes (a restarted Klipper makes a new
# one). Matching peers get the options of [router].
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import glob, logging, os, stat
from ..common import gcode_text
from ..common.timers import drop_timer, next_due
from ..link.link import Link
from ..link.sansio import rpc
from ..link.transport import UnixTransport

INTERVAL = 2.         # s between scans (an instance that dials this one
                      # unknown makes it scan at once)
PROBE_TIMEOUT = 5.
MAX_PROBES = 8        # at once
MAX_SOCKETS = 64


def socket_key(path):
    """Identifies one socket file, or None when there is no socket."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return None
    return (st.st_ino, st.st_mtime)


class Discovery:
    def __init__(self, reactor, peers, patterns, mesh, own_socket, admit):
        self.reactor = reactor
        self.peers = peers
        self.mesh = mesh
        self.own_socket = own_socket
        self.admit = admit        # (name, path, link) -> False if not added
        self.patterns = patterns
        self.left_alone = {}     # real path -> (socket key, why)
        self._probes = {}        # real path -> Probe
        self._real = {}          # path as matched -> real path
        self._timer = None

    def start(self):
        self._timer = self.reactor.register_timer(self._scan,
                                                  self.reactor.NOW)

    def stop(self):
        self._timer = drop_timer(self.reactor, self._timer)
        for probe in list(self._probes.values()):
            probe.stop()
        self._probes.clear()

    def scan_soon(self):
        """An instance this one does not know yet dialed in: look now."""
        if self._timer is not None:
            self.reactor.update_timer(self._timer, self.reactor.NOW)

    def _candidates(self):
        # realpath costs a system call per path component: once per path
        paths = set()
        for pattern in self.patterns:
            for path in sorted(glob.glob(pattern))[:MAX_SOCKETS]:
                real = self._real.get(path)
                if real is None:
                    if len(self._real) > 4 * MAX_SOCKETS:
                        self._real.clear()
                    real = self._real[path] = os.path.realpath(path)
                paths.add(real)
        return sorted(paths)

    def _scan(self, eventtime):
        for probe in list(self._probes.values()):
            if eventtime > probe.started + PROBE_TIMEOUT:
                probe.give_up()
        known = {p.address for p in self.peers.values()}
        for path in self._candidates():
            if (path == self.own_socket or path in known
                    or path in self._probes
                    or len(self._probes) >= MAX_PROBES):
                continue
            key = socket_key(path)
            left = self.left_alone.get(path)
            if key is None or (left is not None and left[0] == key):
                continue
            self._probes[path] = Probe(self, path, key)
        return next_due(eventtime, INTERVAL)

    def probed(self, probe, info, why):
        """A probe's outcome: the peer's router/info, or why not."""
        self._probes.pop(probe.path, None)
        if info is not None:
            why = self._admit(probe.path, info, probe.link)
        if why is not None:
            probe.stop()
            self.leave_alone(probe.path, probe.key, why)

    def leave_alone(self, path, key, why):
        """Not probed again until the socket file (its key) changes;
        logged once per socket file."""
        logging.info("router: discovered socket %s left alone: %s",
                     path, why)
        self.left_alone[path] = (key, why)

    def _admit(self, path, info, link):
        name = gcode_text.check_name(info.get('name'))
        if name is None:
            return "its router gives no valid name"
        if info.get('mesh', 'default') != self.mesh:
            return "it is in mesh %.40r, this instance in '%s'" % (
                info.get('mesh'), self.mesh)
        if not self.admit(name, path, link):
            return "name '%s' is already used here" % (name,)
        logging.info("router: discovered '%s' at %s", name, path)
        return None


class Probe:
    """One connection that asks router/info, then closes. Only where it is
    an endpoint (list_endpoints): Snapmaker's U1 fork shows the error of
    an unknown method on its screen."""
    def __init__(self, discovery, path, key):
        self.discovery = discovery
        self.path = path
        self.key = key
        self.done = False
        reactor = discovery.reactor
        self.started = reactor.monotonic()
        self.link = Link(reactor, UnixTransport(reactor, path, None, 1., 1.),
                         self)
        self.link.start()

    def _finish(self, info, why):
        if not self.done:
            self.done = True
            self.discovery.probed(self, info, why)

    def link_up(self):
        def on_endpoints(result, error):
            endpoints = (result.get('endpoints')
                         if isinstance(result, dict) else None)
            if error is None and isinstance(endpoints, list) and (
                    'router/info' not in endpoints):
                self._finish(None, "no module there (no router/info)")
            else:
                self._ask('router/info', on_info)
        def on_info(result, error):
            if error is not None or not isinstance(result, dict):
                self._finish(None, "no module there (%s)" % (error,))
            else:
                self._finish(result, None)
        self._ask('list_endpoints', on_endpoints)

    def _ask(self, method, on_reply):
        if self.done:
            return
        try:
            self.link.request(method, {}, on_reply, PROBE_TIMEOUT)
        except rpc.NotSent as e:
            self._finish(None, str(e))

    def link_down(self, reason):
        self._finish(None, reason)

    def stop(self):
        self.link.stop()

    def give_up(self):
        self._finish(None, self.link.last_error or "no answer")

    def link_push(self, msg):
        pass
