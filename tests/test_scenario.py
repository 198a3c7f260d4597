# The project's seed scenario, end to end, with the files of
# config_examples/led_follows_print: main prints, led follows its state.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, re, time
from harness import ROOT, wait_until

EXAMPLE = os.path.join(ROOT, 'config_examples', 'led_follows_print')
SOCKETS = {'main': '~/printer_data/comms/klippy.sock',
           'led': '~/printer_led_data/comms/klippy.sock',
           'afc': '~/printer_afc_data/comms/klippy.sock'}

MAIN_EXTRA = """
[gcode_macro BUSY]
variable_n: 0
gcode:

[gcode_macro FAIL]
gcode:
  {action_raise_error("filament jam")}
"""

# File-output klippy prints as fast as it reads; 20000 cheap lines keep a
# state for about 0.75 s, longer than Klipper's 0.25 s status refresh.
BUSY = "SET_GCODE_VARIABLE MACRO=BUSY VARIABLE=n VALUE=1\n" * 20000


def example_config(mesh, name):
    with open(os.path.join(EXAMPLE, name + '.cfg')) as f:
        text = f.read()
    for peer, path in SOCKETS.items():
        text = text.replace(path, mesh.sock(peer))
    return text


def led_states(led):
    return [m.group(1) for m in (re.match(r'echo: LED: (\w+)$', line)
                                 for line in list(led.client.output)) if m]


def test_led_follows_print_pause_resume_complete_cancel_error(mesh):
    for name in ('main', 'led', 'afc'):
        mesh.add(name, example_config(mesh, name)
                 + (MAIN_EXTRA if name == 'main' else ''))
    main, led = mesh['main'], mesh['led']
    # led first, then afc, then main: the subscription waits for main
    mesh.start('led')
    led.client
    mesh.start('afc')
    time.sleep(.5)
    assert led_states(led) == []
    mesh.start('main')
    mesh.wait_links()
    run_print_sequence(main, led)


def run_print_sequence(main, led, then_kill=True):
    """main prints, pauses, resumes, completes, cancels and fails; led
    shows each state once, in order (the led of led_follows_print)."""
    with open(os.path.join(main.gcodes, 'pause.gcode'), 'w') as f:
        f.write(BUSY + "PAUSE\n" + BUSY)
    with open(os.path.join(main.gcodes, 'jam.gcode'), 'w') as f:
        f.write(BUSY + "FAIL\n" + BUSY)
    wait_until(lambda: led_states(led) == ['standby'], 5.)

    main.gcode("SDCARD_PRINT_FILE FILENAME=pause.gcode")
    wait_until(lambda: led_states(led)[-1:] == ['paused'], 10.)
    main.gcode("RESUME")
    wait_until(lambda: led_states(led)[-1:] == ['complete'], 10.)
    assert led_states(led) == ['standby', 'printing', 'paused', 'printing',
                               'complete']

    main.gcode("SDCARD_PRINT_FILE FILENAME=pause.gcode")
    wait_until(lambda: led_states(led)[-1:] == ['paused'], 10.)
    main.gcode("CANCEL_PRINT")
    wait_until(lambda: led_states(led)[-1:] == ['cancelled'], 10.)

    main.gcode("SDCARD_PRINT_FILE FILENAME=jam.gcode")
    wait_until(lambda: led_states(led)[-1:] == ['error'], 10.)
    time.sleep(.6)
    # Between two prints Klipper may pass through standby for one refresh
    seq = led_states(led)[5:]
    assert [s for s in seq if s != 'standby'] == [
        'printing', 'paused', 'cancelled', 'printing', 'error'], seq

    # main goes away: led's on_disconnect sees the last state in the mirror
    if not then_kill:
        return
    main.kill()
    line = led.client.wait_output(lambda l: 'main offline' in l, 5.)
    assert line == 'echo: LED: main offline (last state error)'
    main.start().wait_ready()
    # Back: the full state again, once
    wait_until(lambda: led_states(led)[-1:] == ['standby'], 5.)
    time.sleep(.6)
    assert led_states(led)[-2:] == ['error', 'standby']
    assert main.state() == led.state() == 'ready'
