# The scripts peers' routers send here (router/gcode), run with what they
# print watched: pushed back to the caller as it is printed, and a
# command Klipper does not know turned into the error it is not
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging
from .sansio.output import ServedWatch


class ScriptOutput:
    """Owns the one output handler this instance registers (Klipper has
    no way to unregister one): between scripts it does nothing; while a
    peer's script runs, every console line goes to that script's watch."""
    def __init__(self, gcode, run_now):
        self.gcode = gcode
        self.run_now = run_now    # (func) -> its error, as a job's
        self._active = []
        gcode.register_output_handler(self._on_output)

    def run(self, script, send=None):
        """Runs script as gcode/script does, as a job of this instance
        (run_now); send(response), if given, gets each output message
        meanwhile. Returns why it failed: its error, or the first
        'Unknown command:"X"' it printed; None when it ran."""
        watch = ServedWatch(send)
        if 'INTERRUPT' in script:
            # Kalico runs such a script without the G-code mutex (its
            # HEATER_INTERRUPT must not wait behind a heater wait): as
            # gcode.run_script does, whatever the flavor
            try:
                self._watched(watch, lambda: self.gcode.run_script(script))
            except self.gcode.error as e:
                return str(e)
            return watch.unknown
        # The watch starts once the script holds the mutex (run_now takes
        # it): what others print while it waits for it is theirs
        error = self.run_now(lambda: self._watched(
            watch, lambda: self.gcode.run_script_from_command(script)))
        return error if error is not None else watch.unknown

    def _watched(self, watch, run):
        self._active.append(watch)
        try:
            run()
        finally:
            self._active.remove(watch)

    def _on_output(self, msg):
        # Called by every console line of this instance, inside whatever
        # printed it: nothing may escape
        for watch in self._active:
            try:
                response = watch.take(msg)
                if response is not None:
                    watch.send(response)
            except Exception:
                logging.exception("router: cannot pass on script output")


def pusher(conn, call):
    """A send(response) that pushes an output message to the calling
    router's connection, tagged with its call number (what Klipper's own
    gcode/subscribe_output sends, plus the tag)."""
    def send(response):
        if not conn.is_closed():
            conn.send({'router': 'output',
                       'params': {'call': call, 'response': response}})
    return send
