# Checks shared by the reliability tests (garbage peer, fuzz, stress)
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
from harness import assert_clean_log


def assert_healthy(node):
    assert node.alive(), "%s exited:\n%s" % (node.name, node.log_tail(80))
    assert node.state() == 'ready', node.log_tail(80)
    assert_clean_log(node)


def assert_still_works(node, peer='led'):
    """Local G-code, ROUTER_PRINTERS_LIST and a script on a real peer."""
    node.gcode("ROUTER_PRINTERS_LIST")
    node.gcode("M118 still-alive")
    node.gcode("ROUTER_GCODE_SCRIPT TARGET=%s WAIT=1 SCRIPT='M118 ok'"
               % (peer,))
