# Peers on another host, through that host's Moonraker (/klippysocket):
# real klippy and real Moonraker on a second "host", a network namespace
# with its own address on a veth pair. Skipped, saying why, where
# namespaces cannot be made (not root, no ip, a container without them).
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, time
import pytest
from harness import Mesh, Moonraker, output_json, wait_until
from macros import COMMON
import remote_host

WHY = remote_host.why_unavailable() or (
    None if Moonraker.available() else
    "moonraker not installed (scripts/setup-venv.sh installs it when there"
    " is a Python 3.10 or newer)")
pytestmark = pytest.mark.skipif(WHY is not None, reason=WHY or '')

HOOKS = r"""
[gcode_macro HOOKS]
variable_up: 0
variable_down: 0
gcode:
  SET_GCODE_VARIABLE MACRO=HOOKS VARIABLE={params.VAR} VALUE={printer["gcode_macro HOOKS"][params.VAR] + 1}

[router event ping]
gcode: REC WHO=main
"""

AFC = r"""
[router event pong]
gcode: REC WHO=afc
"""


class Hosts:
    """main on this host, afc on the namespace "host"; each dials the
    other through the other's Moonraker, with that Moonraker's API key."""
    def __init__(self, runtime, afc_extra='', main_extra=''):
        self.ns = remote_host.Netns()
        self.mesh = mesh = Mesh(runtime)
        self.keys = {}
        for name in ('main', 'afc'):
            path = os.path.join(mesh.workdir, name + '.key')
            open(path, 'w').close()
            self.keys[name] = path
        main = mesh.add('main', '')
        afc = mesh.add('afc', '')
        afc.prefix = self.ns.prefix
        # Moonraker trusts only its own host: the far side needs the key
        self.mr = {
            'main': Moonraker(main, host=self.ns.host_ip),
            'afc': Moonraker(afc, host=self.ns.ip, prefix=self.ns.prefix)}
        main.write_config(
            "[router]\nname: main\n" + self.section('afc', main_extra)
            + COMMON + HOOKS)
        afc.write_config("[router]\nname: afc\n" + self.section(
            'main', afc_extra) + COMMON + AFC)

    def url(self, name):
        mr = self.mr[name]
        return 'ws://%s:%d/klippysocket' % (mr.host, mr.port)

    def section(self, name, extra=''):
        return ("\n[router %s]\nurl: %s\napi_key_file: %s\n"
                "on_connect: HOOKS VAR=up\non_disconnect: HOOKS VAR=down\n%s\n"
                % (name, self.url(name), self.keys[name], extra))

    def start(self):
        # Keys first (Moonraker makes its key at its first start), so no
        # dial meets a refusal
        for name, mr in self.mr.items():
            mr.start(wait=False)
            self.write_key(name)
        self.mesh.start()
        for mr in self.mr.values():
            mr.wait_ready()
        self.mesh.wait_links(20.)
        return self

    def write_key(self, name, key=None):
        with open(self.keys[name], 'w') as f:
            f.write((key or self.mr[name].api_key()) + '\n')

    def __getitem__(self, name):
        return self.mesh[name]

    def close(self):
        for mr in self.mr.values():
            mr.stop()
        self.mesh.close()
        self.ns.close()


@pytest.fixture(scope='module')
def hosts(runtime):
    h = Hosts(runtime)
    try:
        yield h.start()
    finally:
        h.close()


def test_gcode_both_ways_with_waits_and_errors(hosts):
    main, afc = hosts['main'], hosts['afc']
    main.gcode('ROUTER_GCODE_SCRIPT TARGET=afc WAIT=1 SCRIPT="MARK VALUE=7"')
    assert afc.macro_vars('MARK')['value'] == 7
    afc.gcode('ROUTER_GCODE_SCRIPT TARGET=main WAIT=1 SCRIPT="MARK VALUE=8"')
    assert main.macro_vars('MARK')['value'] == 8
    with pytest.raises(Exception) as e:
        main.gcode('ROUTER_GCODE_SCRIPT TARGET=afc WAIT=1 SCRIPT=FAIL')
    assert 'deliberate failure' in str(e.value)
    st = main.router_status()['peers']['afc']
    assert st['ready'] and st['module'], st
