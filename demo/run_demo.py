# The demo mesh: three real klippy instances (main, afc, led) with [router]
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, signal, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'support'))
from harness import Mesh, Runtime, wait_until  # noqa: E402

COLORS = {'main': '\033[1;34m', 'led': '\033[1;35m', 'afc': '\033[1;33m',
          'demo': '\033[1;32m'}
RESET = '\033[0m'
if not sys.stdout.isatty():
    COLORS = dict.fromkeys(COLORS, '')
    RESET = ''

EXAMPLES = os.path.join(ROOT, 'config_examples')
SOCKETS = {'main': '~/printer_data/comms/klippy.sock',
           'led': '~/printer_led_data/comms/klippy.sock',
           'afc': '~/printer_afc_data/comms/klippy.sock'}

# main: the [router] part of config_examples/led_follows_print, plus the
# filament handoff of config_examples/filament_unit_events.
MAIN_EXTRA = """
[router event ace_feed_done]
gcode:
  _ON_FEED_DONE

[gcode_macro _ON_FEED_DONE]
gcode:
  M118 lane {params.LANE} loaded by {params.SOURCE}: resuming
  RESUME

[gcode_macro BUSY]
variable_n: 0
gcode:
"""

AFC_EXTRA = """
[router event ace_feed]
gcode:
  AFC_FEED

[gcode_macro AFC_FEED]
gcode:
  M118 feeding lane {params.LANE} ({params.LENGTH} mm), asked by {params.SOURCE}
  ROUTER_EVENT_TRIGGER EVENT=ace_feed_done LANE={params.LANE}
"""

LED_EXTRA = """
[gcode_macro LED_SELFTEST]
gcode:
  {action_raise_error("LED strip not found on this board")}
"""

# File-output klippy prints as fast as it reads: 20000 cheap lines hold a
# state for about 0.75 s, so led can see each one.
BUSY = "SET_GCODE_VARIABLE MACRO=BUSY VARIABLE=n VALUE=1\n" * 20000
DEMO_GCODE = BUSY + "PAUSE\n" + BUSY


def config(mesh, name, extra):
    with open(os.path.join(EXAMPLES, 'led_follows_print', name + '.cfg')) as f:
        text = f.read()
    for peer, path in SOCKETS.items():
        text = text.replace(path, mesh.sock(peer))
    return text + extra


def say(name, text):
    for line in text.splitlines():
        sys.stdout.write("%s[%-4s]%s %s\n" % (COLORS.get(name, ''), name,
                                              RESET, line))
    sys.stdout.flush()


def follow_output(node, stop):
    """Prints what the instance writes to its console, as it happens
    (across restarts of the instance: each has a new API connection)."""
    seen, client = 0, None
    while not stop.is_set():
        try:
            if node.alive():
                if node.client is not client:
                    client, seen = node.client, 0
                out = client.output
                while seen < len(out):
                    say(node.name, out[seen])
                    seen += 1
        except Exception:
            client = None
        time.sleep(.02)


def step(text):
    time.sleep(.6)   # let the previous step's output print first
    say('demo', '')
    say('demo', '>>> ' + text)


def run(mesh):
    extras = {'main': MAIN_EXTRA, 'led': LED_EXTRA, 'afc': AFC_EXTRA}
    for name in ('main', 'led', 'afc'):
        mesh.add(name, config(mesh, name, extras[name]))
    with open(os.path.join(mesh['main'].gcodes, 'demo.gcode'), 'w') as f:
        f.write(DEMO_GCODE)
    step("Starting led, afc, then main: three klippy processes with"
         " [router] (config_examples/led_follows_print; files in %s)"
         % (mesh.workdir,))
    stop = threading.Event()
    for name in ('led', 'afc', 'main'):
        mesh[name].start().wait_ready()
        mesh[name].client
        threading.Thread(target=follow_output, args=(mesh[name], stop),
                         daemon=True).start()
    mesh.wait_links()
    try:
        step("main: ROUTER_PRINTERS_LIST")
        mesh['main'].gcode("ROUTER_PRINTERS_LIST")
        step("main starts a print; led follows print_stats.state by its"
             " subscription (a tool change in the file pauses it)")
        mesh['main'].gcode("SDCARD_PRINT_FILE FILENAME=demo.gcode")
        wait_until(lambda: mesh['main'].query({'print_stats': ['state']})[
            'print_stats']['state'] == 'paused', 10.)
        step("Paused for a tool change: main fires the event ace_feed;"
             " afc feeds and answers ace_feed_done, whose handler on main"
             " resumes the print")
        mesh['main'].gcode("ROUTER_EVENT_TRIGGER EVENT=ace_feed LANE=2"
                           " LENGTH=950")
        wait_until(lambda: mesh['main'].query({'print_stats': ['state']})[
            'print_stats']['state'] == 'complete', 10.)
        step("main queries an object of led directly: ROUTER_OBJECTS_QUERY")
        mesh['main'].gcode('ROUTER_OBJECTS_QUERY TARGET=led'
                           ' OBJECTS="webhooks:state"')
        step("An error on led comes back to main as an error naming led"
             " (WAIT=1)")
        try:
            mesh['main'].gcode("ROUTER_GCODE_SCRIPT TARGET=led WAIT=1 "
                               "SCRIPT=LED_SELFTEST")
        except Exception as e:
            say('demo', "main's ROUTER_GCODE_SCRIPT failed: %s" % (e,))
        step("kill -9 of main: led sees it go (its on_disconnect shows the"
             " last state from the mirror); afc and led keep running")
        mesh['main'].kill()
        step("main starts again: links and led's subscription come back by"
             " themselves, led gets the full state once")
        mesh['main'].start().wait_ready()
        mesh.wait_links()
        step("main: ROUTER_PRINTERS_LIST")
        mesh['main'].gcode("ROUTER_PRINTERS_LIST")
        step("Done. Stopping the three instances.")
    finally:
        stop.set()


def main():
    runtime = Runtime()
    runtime.install_module()
    mesh = Mesh(runtime)
    interrupted = []
    def on_signal(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    failed = False
    try:
        run(mesh)
    except KeyboardInterrupt:
        say('demo', 'Interrupted: stopping the instances.')
    except Exception as e:
        # Ctrl-C in a terminal also reaches the klippy processes, which may
        # close their sockets before this process sees the signal.
        time.sleep(.2)
        if interrupted:
            say('demo', 'Interrupted: stopping the instances.')
        else:
            say('demo', 'Demo failed: %s' % (e,))
            failed = True
    finally:
        mesh.close()
    say('demo', 'All instances stopped, files removed.')
    if failed:
        sys.exit(1)


if __name__ == '__main__':
    main()
