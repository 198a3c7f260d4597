# Test-only klippy extras module: the least a module can do to run one
# G-code line on another instance and wait for it. bench/hop_latency.py
# times it beside ROUTER_GCODE_SCRIPT, in the same rounds, as the floor
# that no module can go under: Klipper's parse of a command with
# parameters, a request on the peer's API socket, a completion to wait on.
# It checks nothing, never reconnects and never times out: a real printer
# must not load it. Installed by the test harness.
#
#   [least_hop]
#   path: <the peer's API socket>
#   LEAST_HOP TARGET=<any> WAIT=1 SCRIPT=<one line>
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import json, socket


class LeastHop:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.reactor = self.printer.get_reactor()
        self.path = config.get('path')
        self.sock = None
        self.partial = b''
        self.waiting = {}
        self.next_id = 0
        self.printer.lookup_object('gcode').register_command(
            'LEAST_HOP', self.cmd_LEAST_HOP, desc=self.cmd_LEAST_HOP_help)

    def _connect(self):
        # Blocking, once: the peer is up when the bench calls
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        sock.setblocking(False)
        self.sock = sock
        self.reactor.register_fd(sock.fileno(), self._read)

    def _read(self, eventtime):
        frames = (self.partial + self.sock.recv(65536)).split(b'\x03')
        self.partial = frames.pop()
        for frame in frames:
            reply = json.loads(frame)
            completion = self.waiting.pop(reply.get('id'), None)
            if completion is not None:
                completion.complete(reply)

    cmd_LEAST_HOP_help = "Test only: run SCRIPT on the peer at path, wait"
    def cmd_LEAST_HOP(self, gcmd):
        if self.sock is None:
            self._connect()
        self.next_id += 1
        completion = self.waiting[self.next_id] = self.reactor.completion()
        # The endpoint the router uses on a peer with the module
        self.sock.send(json.dumps({
            'id': self.next_id, 'method': 'router/gcode',
            'params': {'script': gcmd.get('SCRIPT')}}).encode() + b'\x03')
        reply = completion.wait()
        if 'error' in reply:
            raise gcmd.error(str(reply['error']))


def load_config(config):
    return LeastHop(config)
