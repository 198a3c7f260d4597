# A one-sided listing: led lists afc, afc does not list led. led cannot
# run anything on afc, so afc is not ready on led, and each side says what
# to add where.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import pytest
from harness import ApiError, peer_section, wait_until
from macros import MARK

# led's hook for afc sends G-code there: it runs once afc takes it
HOOK = "on_connect: ROUTER_GCODE_SCRIPT TARGET=afc SCRIPT='MARK VALUE=7'\n"
FIX = "'afc' does not know instance 'led': add [router led] to afc's config"


def _afc_entry(node):
    return node.router_status()['peers'].get('afc', {})


def test_one_sided_listing_is_not_ready_and_says_so_on_both_sides(mesh):
    mesh.add_router_node('led', ['afc'], MARK, {'afc': HOOK})
    mesh.add_router_node('afc', [], MARK)
    mesh.start()
    led, afc = mesh['led'], mesh['afc']
    # Connected (the handshake done), and not ready: afc refuses led all
    wait_until(lambda: _afc_entry(led).get('connected'), 10.,
               what="led connected to afc")
    entry = _afc_entry(led)
    assert entry['ready'] is False
    assert entry['state'] == 'ready'   # afc's Klipper itself is fine
    assert entry['state_message'] == FIX
    assert entry['reached'] == "connected, it does not list 'led'"
    with pytest.raises(ApiError) as e:
        led.gcode("ROUTER_GCODE_SCRIPT TARGET=afc SCRIPT='MARK VALUE=1'")
    assert FIX in str(e.value)
    led.gcode("ROUTER_PRINTERS_LIST")
    text = led.client.wait_output(lambda l: "Router 'led'" in l)
    assert "// afc: not listed there (%s) for " % (FIX,) in text, text
    # The other side: afc names led as an instance that dials it unlisted
    wait_until(lambda: 'led' in afc.router_status()['instances'], 5.)
    assert afc.router_status()['instances']['led'] == (
        "not listed here: add [router led] to this config")
    afc.gcode("ROUTER_PRINTERS_LIST")
    text = afc.client.wait_output(lambda l: "Router 'afc'" in l)
    assert ("// led: dials this instance; not listed here: add [router led]"
            " to this config" in text), text
    assert afc.macro_vars('MARK')['value'] == 0   # no on_connect yet
    # Fixed on afc: led sees it ready at its next keepalive, and its
    # on_connect hook runs then (not before: it would have been refused)
    afc.write_config("[router]\nname: afc\n" + MARK
                     + peer_section('led', mesh.sock('led')))
    afc.restart()
    wait_until(lambda: _afc_entry(led).get('ready'), 10.,
               what="afc ready on led")
    wait_until(lambda: afc.macro_vars('MARK')['value'] == 7, 5.,
               what="led's on_connect ran on afc")
    assert _afc_entry(led)['state_message'] == 'Printer is ready'
    assert 'led' not in afc.router_status()['instances']
    led.gcode("ROUTER_GCODE_SCRIPT TARGET=afc WAIT=1 SCRIPT='MARK VALUE=2'")
    assert afc.macro_vars('MARK')['value'] == 2
