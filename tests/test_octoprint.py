# The module under the PyPI OctoPrint package streaming a print on klippy's
# pty. OctoPrint treats every '!!' line as a firmware error: with Klipper's
# recommended setting (disconnectOnErrors false) it cancels the print it
# streams, with its defaults it sends M112. A failure the module reports
# later (a WAIT=0 script failing on a peer, a callback or event handler
# failing) answers no command of OctoPrint's and must not end its print;
# the answer to a command that failed stays '!!'.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import pytest
from harness import wait_until
from octoprint_host import OctoPrint

pytestmark = pytest.mark.skipif(
    not OctoPrint.available(),
    reason="octoprint not installed in .venv/octoprint"
           " (scripts/setup-venv.sh installs it)")

MAIN_MACROS = """
[gcode_macro FAIL_MAIN]
gcode:
  {action_raise_error("boom from main handler")}

[gcode_macro FAIL_CB]
gcode:
  {action_raise_error("boom from main callback")}
"""

LED_MACROS = """
[gcode_macro FAIL_MACRO]
gcode:
  {action_raise_error("boom from led")}
"""

STEPS = 70          # x 150 ms dwell: about 10.5 s of printing


def print_file():
    lines = ["M118 optest start"]
    for i in range(STEPS):
        if i % 10 == 0:
            lines.append("M118 optest step %d" % (i,))
        lines.append("G4 P150")
    lines.append("M118 optest done")
    return '\n'.join(lines) + '\n'


@pytest.mark.parametrize('disconnect_on_errors', [False, True],
                         ids=['klipper-recommended', 'octoprint-default'])
def test_late_router_errors_do_not_cancel_octoprint_print(
        mesh, disconnect_on_errors):
    # klipper-recommended: "cancel any ongoing prints but stay connected";
    # octoprint-default: any '!!' line means M112 and disconnect
    mesh.add_router_node('main', ['led'], MAIN_MACROS)
    mesh.add_router_node('led', ['main'], LED_MACROS)
    mesh.start()
    mesh.wait_links()
    main = mesh['main']
    op = OctoPrint(main, disconnect_on_errors=disconnect_on_errors)
    try:
        op.start(timeout=40.)

        answer = []
        if not disconnect_on_errors:
            # A command OctoPrint sends itself that fails is answered with
            # '!!' (idle: OctoPrint only logs it; with its defaults it
            # would disconnect, as for any firmware error)
            op.command('ROUTER_GCODE_SCRIPT TARGET=nosuch SCRIPT=G4')
            answer = wait_until(lambda: [t for d, t in op.serial_lines()
                                         if d == 'recv' and 'nosuch' in t],
                                10., interval=.1, what="answer to nosuch")
            assert answer[0].startswith('!!'), answer
            assert "Unknown TARGET 'nosuch'" in answer[0], answer
            assert op.printer_state() == 'Operational'

        # OctoPrint streams a print of about 10 s
        op.upload('optest.gcode', print_file(), select=True, print_=True)
        wait_until(lambda: any(d == 'recv' and 'optest step 10' in t
                               for d, t in op.serial_lines()),
                   15., interval=.1, what="print under way")
        assert op.printer_state() == 'Printing', op.serial_text()[-3000:]

        # Late failures made through main's own API socket, not OctoPrint:
        # a WAIT=0 script failing on led, an event handler and a
        # subscription callback failing on main
        main.gcode('ROUTER_GCODE_SCRIPT TARGET=led SCRIPT=FAIL_MACRO')
        main.gcode('ROUTER_EVENT_SUBSCRIBE EVENT=optest GCODE=FAIL_MAIN')
        main.gcode('ROUTER_EVENT_TRIGGER EVENT=optest')
        main.gcode('ROUTER_OBJECTS_SUBSCRIBE TARGET=led'
                   ' OBJECTS=print_stats:state CALLBACK=FAIL_CB')
        reports = ('boom from led', 'boom from main handler',
                   'boom from main callback')
        def reported_or_ended():
            out = list(main.client.output)
            return all(any('Router' in line and w in line for line in out)
                       for w in reports) or op.printer_state() != 'Printing'
        wait_until(reported_or_ended, 10., interval=.1,
                   what="the router's late reports")

        job = op.wait_job_done(40.)
        lines = op.serial_lines()
        recv = [t for d, t in lines if d == 'recv']
        sent = [t for d, t in lines if d == 'send']
        router = [t for t in recv if 'Router' in t]
        errors = [t for t in recv if t.startswith('!!')]
        states = [t.split('from ', 1)[1] for d, t in lines if d == 'info'
                  and t.startswith('Changing monitoring state from')]
        # The print completed: it was never cancelled
        assert any('optest done' in t for t in recv) and not any(
            'Cancelling' in t for t in states), (
            "OctoPrint's print did not complete: job %r\nOctoPrint's"
            " states: %s\nM112 sent: %s\n'!!' lines it received:\n%s" % (
                job['state'], '; '.join(states),
                [t for t in sent if 'M112' in t], '\n'.join(errors)))
        assert job['state'] == 'Operational'
        assert job['progress']['completion'] == pytest.approx(100.), job
        # OctoPrint stayed connected and sent no emergency stop
        assert op.printer_state() == 'Operational'
        assert not any('M112' in t for t in sent), sent
        # The late reports reached the pty, and none as an error line
        for what in reports:
            assert any(what in t for t in router), (what, router)
        assert not [t for t in router if t.startswith('!!')], router
        # ... while OctoPrint was printing
        assert max(recv.index(t) for t in router) < [
            i for i, t in enumerate(recv) if 'optest done' in t][0], recv
        # Only the answer to OctoPrint's own failed command was '!!'
        assert errors == answer[:1], errors
        assert main.state() == 'ready' and mesh['led'].state() == 'ready'
    finally:
        op.stop()
