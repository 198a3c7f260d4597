# Following a peer that runs the module: its router sends each change of
# the followed fields as it happens (router/subscribe), so a state that
# lasts 50 ms is seen once, in order, every time; Klipper's own 250 ms
# sampling would miss most of them. Real klippy processes.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, time
from harness import output_json, wait_until
from macros import COMMON

MAIN = """
[router]
name: main

[router led]
socket: %s

[gcode_macro NOOP]
gcode:
"""

LED = """
[router]
name: led

[router main]
socket: %s
subscribe: print_stats:state
on_update: REC
"""

# A no-op macro line per line: long enough to stay printing for the test
PRINT_LINES = 3000000


def states(led):
    return [rec['PRINT_STATS_STATE'] for rec in output_json(led, 'REC')]


def printing(mesh):
    """main prints, led follows it: (main, led, led's callbacks so far)."""
    main = mesh.add('main', MAIN % (mesh.sock('led'),) + COMMON)
    led = mesh.add('led', LED % (mesh.sock('main'),) + COMMON)
    with open(os.path.join(main.gcodes, 'long.gcode'), 'w') as f:
        f.write("NOOP\n" * PRINT_LINES)
    mesh.start()
    mesh.wait_links()
    main.gcode("SDCARD_PRINT_FILE FILENAME=long.gcode")
    wait_until(lambda: states(led)[-1:] == ['printing'], 5.)
    return main, led, len(states(led))


def test_a_50_ms_pause_is_seen_exactly_once_every_time(mesh):
    main, led, base = printing(mesh)
    for i in range(100):
        main.gcode("PAUSE")
        time.sleep(.05)
        main.gcode("RESUME")
        time.sleep(.05)
    assert main.query({'print_stats': ['state']})['print_stats'][
        'state'] == 'printing', "the print ended during the test"
    want = ['paused', 'printing'] * 100
    wait_until(lambda: len(states(led)) >= base + len(want), 5.)
    time.sleep(.3)
    assert states(led)[base:] == want
    main.gcode("CANCEL_PRINT")
    wait_until(lambda: states(led)[-1:] == ['cancelled'], 5.)


def test_a_short_run_between_long_pauses_is_seen(mesh):
    # A paused print holds no G-code: the router still looks at the fast
    # pace, so a RESUME that another pause follows at once (a filament
    # sensor that triggers again) is seen, not only the pauses
    main, led, base = printing(mesh)
    main.gcode("PAUSE")
    for i in range(3):
        # Longer than the fast pace lasts after G-code ran (2 s)
        time.sleep(2.5)
        main.gcode("RESUME")
        time.sleep(.05)
        main.gcode("PAUSE")
    want = ['paused'] + ['printing', 'paused'] * 3
    wait_until(lambda: len(states(led)) >= base + len(want), 5.)
    time.sleep(.3)
    assert states(led)[base:] == want
    main.gcode("CANCEL_PRINT")
    wait_until(lambda: states(led)[-1:] == ['cancelled'], 5.)
