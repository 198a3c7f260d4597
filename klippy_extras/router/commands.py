# The ROUTER_* G-code commands
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging
from . import gcode_text
from .peer import PeerError

_NO_REPLY = object()


class RouterCommands:
    """Handlers meet bad input with gcmd.error (a '!!' line) only: any
    other exception in a G-code handler shuts the printer down."""
    def __init__(self, router):
        self.router = router
        self.printer = router.printer
        self.reactor = router.reactor
        gcode = router.gcode
        for cmd in ('ROUTER_PRINTERS_LIST', 'ROUTER_GCODE_SCRIPT'):
            func = getattr(self, 'cmd_' + cmd)
            gcode.register_command(cmd, func, when_not_ready=True,
                                   desc=getattr(self, 'cmd_%s_help' % cmd))

    def _target(self, gcmd):
        target = gcmd.get('TARGET')
        peer = self.router.lookup_peer(target)
        if peer is None:
            known = ', '.join(sorted(self.router.peers)) or 'none configured'
            raise gcmd.error("Unknown TARGET '%s' (peers: %s)"
                             % (target, known))
        return peer

    def _timeout(self, gcmd, default):
        text = gcmd.get('TIMEOUT', None)
        if text is None:
            return default
        value = gcode_text.parse_seconds(text)
        if value is None:
            raise gcmd.error("TIMEOUT must be a number of seconds between"
                             " 0.001 and 86400, not '%s'" % (text,))
        return value

    cmd_ROUTER_PRINTERS_LIST_help = "List the router's peers and their state"
    def cmd_ROUTER_PRINTERS_LIST(self, gcmd):
        now = self.reactor.monotonic()
        lines = ["Router '%s': %d peer(s)" % (self.router.name,
                                               len(self.router.peers))]
        for name, peer in sorted(self.router.peers.items()):
            rtt = ("%.1f ms" % (peer.rtt * 1000.,)
                   if peer.rtt is not None else "-")
            line = ("%s: connected=%d ready=%d state=%s since=%.0fs rtt=%s"
                    % (name, peer.session_up, peer.ready, peer.state,
                       now - peer.changed_at, rtt))
            if not peer.ready and peer.link.last_error:
                line += " last_error=%s" % (peer.link.last_error,)
            lines.append(line)
        gcmd.respond_info("\n".join(lines), log=False)

    cmd_ROUTER_GCODE_SCRIPT_help = (
        "Run G-code on another instance: TARGET=<peer> SCRIPT=<gcode>"
        " [WAIT=0|1] [TIMEOUT=<s>]")
    def cmd_ROUTER_GCODE_SCRIPT(self, gcmd):
        is_self = (gcode_text.check_name(gcmd.get('TARGET'))
                   == self.router.name)
        peer = None if is_self else self._target(gcmd)
        script = gcode_text.unescape_script(gcmd.get('SCRIPT'))
        if not script.strip():
            raise gcmd.error("SCRIPT is empty")
        wait = gcmd.get_int('WAIT', 0, minval=0, maxval=1)
        if is_self:
            # Symmetric configs may name this instance as a target
            if wait:
                self.router.gcode.run_script_from_command(script)
            else:
                self.router.runner.run_script(script, "script on '%s'"
                                              % (self.router.name,))
            return
        timeout = self._timeout(gcmd, peer.request_timeout)
        if not wait:
            def report(result, error):
                if error is not None:
                    self.router.runner.report(
                        "script on '%s' failed: %s" % (peer.name, error))
            self._send_script(gcmd, peer, script, report, timeout)
            return
        completion = self.reactor.completion()
        self._send_script(gcmd, peer, script,
                          lambda res, err: completion.complete((res, err)),
                          timeout)
        # The link times the request out; the margin only guards that.
        result, error = completion.wait(
            self.reactor.monotonic() + timeout + 1., (None, "timed out"))
        if error is not None:
            if error == "timed out":
                error = ("no reply within %.3g s (the script may still run"
                         " there)" % (timeout,))
            raise gcmd.error("ROUTER_GCODE_SCRIPT on '%s' failed: %s"
                             % (peer.name, error))

    def _send_script(self, gcmd, peer, script, callback, timeout):
        try:
            peer.run_script(script, callback, timeout)
        except PeerError as e:
            raise gcmd.error("ROUTER_GCODE_SCRIPT: peer '%s' cannot take"
                             " G-code now: %s" % (peer.name, e))


def register(router):
    return RouterCommands(router)
