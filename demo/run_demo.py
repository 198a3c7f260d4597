# The demo mesh: three real klippy instances (main, afc, led) with [router]
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, signal, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))
from harness import Mesh, Runtime, wait_until  # noqa: E402

COLORS = {'main': '\033[1;34m', 'led': '\033[1;35m', 'afc': '\033[1;33m',
          'demo': '\033[1;32m'}
RESET = '\033[0m'
if not sys.stdout.isatty():
    COLORS = dict.fromkeys(COLORS, '')
    RESET = ''

MAIN_CFG = """
[gcode_macro FEED_DONE]
gcode:
  M118 afc reports lane {params.LANE} loaded
"""

LED_CFG = """
[gcode_macro SET_LED_STATE]
gcode:
  M118 LED colour for '{params.STATE}': {params.COLOR|default('white')}

[gcode_macro ROUTER_ON_CONNECTED]
gcode:
  M118 LED: {params.PRINTER} is up, lights on

[gcode_macro ROUTER_ON_DISCONNECTED]
gcode:
  M118 LED: {params.PRINTER} went away ({params.REASON}), lights amber

[gcode_macro LED_SELFTEST]
gcode:
  {action_raise_error("LED strip not found on this board")}
"""

AFC_CFG = """
[gcode_macro AFC_LOAD]
gcode:
  M118 loading lane {params.LANE}
  ROUTER_GCODE_SCRIPT TARGET=main WAIT=1 SCRIPT="FEED_DONE LANE={params.LANE}"
  M118 main acknowledged lane {params.LANE}
"""


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
    peers = {'main': ['led', 'afc'], 'led': ['main'], 'afc': ['main']}
    cfgs = {'main': MAIN_CFG, 'led': LED_CFG, 'afc': AFC_CFG}
    for name in ('main', 'led', 'afc'):
        on_connect = {p: "on_connect: M118 router link to %s is ready\n" % p
                      for p in peers[name]}
        mesh.add_router_node(name, peers[name], cfgs[name], on_connect)
    step("Starting led and afc, then main (each its own klippy process;"
         " files in %s)" % (mesh.workdir,))
    stop = threading.Event()
    threads = []
    for name in ('led', 'afc', 'main'):
        mesh[name].start().wait_ready()
        mesh[name].client
        t = threading.Thread(target=follow_output, args=(mesh[name], stop),
                             daemon=True)
        t.start()
        threads.append(t)
    mesh.wait_links()
    try:
        step("main: ROUTER_PRINTERS_LIST")
        mesh['main'].gcode("ROUTER_PRINTERS_LIST")
        step("main tells led the print started (WAIT=0: fire and forget)")
        mesh['main'].gcode("ROUTER_GCODE_SCRIPT TARGET=led SCRIPT="
                           "\"SET_LED_STATE STATE=printing COLOR=green\"")
        step("afc loads lane 2 and waits (WAIT=1) until main has run"
             " FEED_DONE")
        mesh['afc'].gcode("AFC_LOAD LANE=2")
        step("main runs two commands on led in one SCRIPT ('\\n' between"
             " them)")
        mesh['main'].gcode("ROUTER_GCODE_SCRIPT TARGET=led WAIT=1 SCRIPT="
                           "\"SET_LED_STATE STATE=paused COLOR=blue\\n"
                           "SET_LED_STATE STATE=printing COLOR=green\"")
        step("An error on led comes back to main as an error naming led")
        try:
            mesh['main'].gcode("ROUTER_GCODE_SCRIPT TARGET=led WAIT=1 "
                               "SCRIPT=LED_SELFTEST")
        except Exception as e:
            say('demo', "main's ROUTER_GCODE_SCRIPT failed: %s" % (e,))
        step("kill -9 of main: led and afc see it go, the mesh keeps"
             " running")
        mesh['main'].kill()
        step("main starts again: the links come back by themselves")
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
    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        run(mesh)
    except KeyboardInterrupt:
        say('demo', 'Interrupted: stopping the instances.')
    finally:
        mesh.close()
    say('demo', 'All instances stopped, files removed.')


if __name__ == '__main__':
    main()
