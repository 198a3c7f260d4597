# The module behind the PyPI moonraker package: what Mainsail and Fluidd see
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import pytest
from harness import Moonraker, wait_until
from macros import MARK

pytestmark = pytest.mark.skipif(
    not Moonraker.available(),
    reason="moonraker not installed (scripts/setup-venv.sh installs it when"
           " there is a Python 3.10 or newer, which Moonraker 0.11 needs)")


def test_router_through_moonraker(mesh):
    mesh.add_router_node('main', ['led'], MARK)
    mesh.add_router_node('led', ['main'], MARK)
    mesh.start()
    mesh.wait_links()
    mr = Moonraker(mesh['main'])
    try:
        mr.start()
        # printer.router as the UIs read it
        res = mr.get('/printer/objects/query?router')['result']
        router = res['status']['router']
        assert router['name'] == 'main'
        assert router['peers']['led']['ready'] is True
        assert router['peers']['led']['module'] is True
        assert 'router' in mr.get('/printer/objects/list')['result']['objects']
        # ROUTER_* commands through Moonraker's G-code endpoint
        status, body = mr.post('/printer/gcode/script', {
            'script': 'ROUTER_GCODE_SCRIPT TARGET=led WAIT=1'
                      ' SCRIPT="MARK VALUE=42"'})
        assert status == 200, body
        assert mesh['led'].macro_vars('MARK')['value'] == 42
        status, body = mr.post('/printer/gcode/script', {
            'script': 'ROUTER_GCODE_SCRIPT TARGET=nobody SCRIPT=M118'})
        assert status == 400
        assert "Unknown TARGET 'nobody'" in body['error']['message']
        # The module's endpoints leave Moonraker's own view intact
        info = mr.get('/printer/info')['result']
        assert info['state'] == 'ready'
        assert mr.get('/server/info')['result']['klippy_state'] == 'ready'
        # A peer going away shows up for the UI
        mesh['led'].kill()
        wait_until(lambda: mr.get('/printer/objects/query?router')[
            'result']['status']['router']['peers']['led']['ready'] is False,
            5.)
        assert mr.get('/server/info')['result']['klippy_state'] == 'ready'
    finally:
        mr.stop()
