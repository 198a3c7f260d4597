# Test macros that instances carry: effects the tests read back
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.

# MARK VALUE=n: value becomes n, count counts the calls
MARK = r"""
[gcode_macro MARK]
variable_value: 0
variable_count: 0
gcode:
  SET_GCODE_VARIABLE MACRO=MARK VARIABLE=value VALUE={params.VALUE|default(0)|int}
  SET_GCODE_VARIABLE MACRO=MARK VARIABLE=count VALUE={printer["gcode_macro MARK"].count + 1}
"""

# REC prints its parameters as '// REC {json}' (harness.output_json)
REC = r"""
[gcode_macro REC]
variable_n: 0
gcode:
  SET_GCODE_VARIABLE MACRO=REC VARIABLE=n VALUE={printer["gcode_macro REC"].n + 1}
  {action_respond_info("REC " ~ (params|tojson))}
"""

def printing(name, prefix=None):
    """A macro NAME that prints its parameters as '// PREFIX {json}'
    (PREFIX: NAME unless given), for harness.output_json."""
    return ('\n[gcode_macro %s]\ngcode:\n'
            '  {action_respond_info("%s " ~ (params|tojson))}\n'
            % (name, prefix or name))


FAIL = r"""
[gcode_macro FAIL]
gcode:
  {action_raise_error("deliberate failure")}
"""

COMMON = MARK + REC + FAIL
