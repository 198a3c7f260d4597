# The ROUTER_* G-code commands: what they share, ROUTER_PRINTERS_LIST and
# ROUTER_GCODE_SCRIPT (objects: object_commands.py; events:
# event_commands.py)
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
from ..common import gcode_text
from ..link.sansio import rpc
from ..peer.sansio.session import Phase
from ..link.link import wait_reply
from ..peer.peer import PeerRefused
from ..peer.sansio.subscriptions import close_name


class CommandBase:
    """What the ROUTER_* command handlers share. Handlers meet bad input
    with gcmd.error (a '!!' line) only: any other exception in a G-code
    handler shuts the printer down."""
    def __init__(self, printer, peers, runner, status):
        self.printer = printer
        self.reactor = printer.get_reactor()
        self.gcode = printer.lookup_object('gcode')
        self.peers = peers
        self.runner = runner
        self.status = status

    def _target(self, gcmd):
        target = gcmd.get('TARGET')
        peer = self.peers.lookup(target)
        if peer is None:
            raise gcmd.error(self._unknown_target(target))
        return peer

    def _unknown_target(self, target):
        known = ', '.join(sorted(self.peers)) or 'none configured'
        text = "Unknown TARGET '%s' (peers: %s)" % (target, known)
        name = target.strip().lower()
        if name in self.status.mesh_only_names():
            return text + (": '%s' is known from the mesh only (events"
                           " reach it; a TARGET needs [router %s])"
                           % (name, name))
        close = close_name(name, list(self.peers) + [self.peers.own_name])
        return text + (": did you mean %s?" % (close,) if close else "")

    def _timeout(self, gcmd, default):
        text = gcmd.get('TIMEOUT', None)
        if text is None:
            return default
        value = gcode_text.parse_seconds(text)
        if value is None:
            raise gcmd.error("TIMEOUT must be a number of seconds between"
                             " 0.001 and 86400, not '%s'" % (text,))
        return value

    def _wait(self, gcmd, peer, send, timeout, what, timeout_note=''):
        """Sends with send(callback) and waits, yielding to the reactor,
        for the reply; returns the result or raises a G-code error."""
        # The callback only wakes this command: send may ask for the reply
        # to be taken in the fd callback (see Link.take_now)
        result, error = wait_reply(self.reactor, send, timeout)
        if error is not None:
            if getattr(error, 'kind', None) == rpc.TIMEOUT:
                error = "no reply within %.3g s%s" % (timeout, timeout_note)
            raise gcmd.error("%s on '%s' failed: %s" % (what, peer.name,
                                                        error))
        return result

    def _callback(self, gcmd, must_exist):
        callback = gcmd.get('CALLBACK', '').strip().upper()
        if not callback:
            return ''
        if not gcode_text.MACRO_RE.match(callback):
            raise gcmd.error("CALLBACK '%s' is not a macro name" % (callback,))
        if must_exist and self.runner.find_macro(callback) is None:
            raise gcmd.error("CALLBACK: no [gcode_macro %s] in this config"
                             % (callback,))
        return callback


class RouterCommands(CommandBase):
    """ROUTER_PRINTERS_LIST and ROUTER_GCODE_SCRIPT."""
    def commands(self):
        """(name, handler, help) of each command, for registering."""
        return (('ROUTER_PRINTERS_LIST', self.cmd_ROUTER_PRINTERS_LIST,
                 self.cmd_ROUTER_PRINTERS_LIST_help),
                ('ROUTER_GCODE_SCRIPT', self.cmd_ROUTER_GCODE_SCRIPT,
                 self.cmd_ROUTER_GCODE_SCRIPT_help))

    cmd_ROUTER_PRINTERS_LIST_help = "List the router's peers and their state"
    def cmd_ROUTER_PRINTERS_LIST(self, gcmd):
        now = self.reactor.monotonic()
        peers = self.peers
        lines = ["Router '%s' (mesh '%s'): %d peer(s)" % (
            peers.own_name, self.status.mesh, len(peers))]
        listed = {p['name']: p for p in self.status.printers_list()}
        for name, peer in sorted(peers.items()):
            lines.append("%s: %s; %s" % (name, describe_link(peer, now),
                                         _known_words(listed[name])))
        for name in sorted(set(listed) - set(peers) - {peers.own_name}):
            lines.append("%s: %s" % (name, _known_words(listed[name])))
        gcmd.respond_info("\n".join(lines), log=False)

    cmd_ROUTER_GCODE_SCRIPT_help = (
        "Run G-code on another instance: TARGET=<peer> SCRIPT=<gcode>"
        " [WAIT=0|1] [TIMEOUT=<s>] [IF_READY=0|1]")
    def cmd_ROUTER_GCODE_SCRIPT(self, gcmd):
        target = gcmd.get('TARGET')
        peer = self.peers.lookup(target)
        is_self = peer is None and (gcode_text.check_name(target)
                                    == self.peers.own_name)
        if peer is None and not is_self:
            peer = self._target(gcmd)   # says why
        script = self._script(gcmd)
        wait = gcmd.get_int('WAIT', 0, minval=0, maxval=1)
        if_ready = gcmd.get_int('IF_READY', 0, minval=0, maxval=1)
        if is_self:
            # Symmetric configs may name this instance as a target
            if wait:
                self.gcode.run_script_from_command(script)
            else:
                self.runner.run_script(script, "script on '%s'"
                                              % (self.peers.own_name,))
            return
        timeout = self._timeout(gcmd, peer.request_timeout)
        if not wait:
            self._send_script(gcmd, peer, script, self.runner.reporter(
                "script on '%s'" % (peer.name,), peer.name), timeout,
                if_ready)
            return
        def show(line):
            # What the script prints there, as it arrives: one line here
            # per line there, marked with the peer's name
            gcmd.respond_info("[%s] %s" % (peer.name, line), log=False)
        def send(callback):
            if not self._send_script(gcmd, peer, script, callback, timeout,
                                     if_ready, inline=True, show=show):
                callback(None, None)    # skipped: nothing to wait for
        self._wait(gcmd, peer, send, timeout, 'ROUTER_GCODE_SCRIPT',
                   " (the script may still run there)")

    def _script(self, gcmd):
        # One command line, sent as it is: no escape in it can become a
        # line break, so text a macro put into SCRIPT is never a second
        # command. Several commands are several ROUTER_GCODE_SCRIPT lines.
        script = gcmd.get('SCRIPT')
        if not script.strip():
            raise gcmd.error("SCRIPT is empty")
        if gcode_text.has_control(script):
            raise gcmd.error("SCRIPT holds a control character; give one"
                             " command per ROUTER_GCODE_SCRIPT")
        return script

    def _send_script(self, gcmd, peer, script, callback, timeout, if_ready,
                     inline=False, show=None):
        """True once sent. A peer that cannot take it is an error, or with
        IF_READY=1 one '//' line and False (the calling macro goes on)."""
        try:
            peer.run_script(script, callback, timeout, inline, watch=True,
                            show=show)
        except rpc.NotSent as e:
            # A refusal is a setting of the peer: no use trying again
            refused = isinstance(e, PeerRefused)
            why = str(e) if refused else (
                "'%s' cannot take G-code now: %s" % (peer.name, e))
            if not if_ready:
                raise gcmd.error("ROUTER_GCODE_SCRIPT: %s%s" % (
                    '' if refused else 'peer ', why))
            gcmd.respond_info("ROUTER_GCODE_SCRIPT: script skipped, %s"
                              % (gcode_text.clean_text(why),))
            return False
        return True


def duration(seconds):
    seconds = int(max(0., seconds))
    if seconds < 60:
        return "%ds" % (seconds,)
    if seconds < 3600:
        return "%dm%02ds" % (seconds // 60, seconds % 60)
    return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)


KNOWN_WORDS = {'configured': 'listed in this config',
               'shared file': 'listed in the mesh file',
               'mesh': 'known from the mesh'}


def _known_words(entry):
    """How an instance is known and reached, in words for the console
    (the printers list's known_by and reached)."""
    reached = entry['reached']
    for word, words in (('direct', 'linked directly'),
                        ('relayed via', 'reached through')):
        if reached.startswith(word):
            reached = words + reached[len(word):]
    return "%s; %s" % (KNOWN_WORDS.get(entry['known_by'], entry['known_by']),
                       reached)


def describe_link(peer, now):
    """One console line: phase, for how long, round trip, last error."""
    s = peer.session
    since = duration(now - s.changed_at)
    phase = s.phase
    words = s.describe('') if phase in (Phase.NOT_READY,
                                        Phase.UNLISTED) else phase.value
    text = "%s for %s" % (words, since)
    msg = s.state_message.split('\n')[0].strip()
    if phase is Phase.NOT_READY and msg:
        text += " (%s)" % (msg,)
    if s.session_up:
        if s.rtt is not None:
            text += ", rtt %.1f ms" % (s.rtt * 1000.,)
        text += ", module" if s.has_module else ", no module"
    elif peer.link.last_error:
        text += ": %s" % (peer.link.last_error,)
    if s.missing:
        text += "; it has no %s" % (s.missing,)
    return text


def register(gcode, handlers):
    """Every ROUTER_* command works while this printer is not ready too
    (it can still tell its peers)."""
    for name, handler, desc in handlers.commands():
        gcode.register_command(name, handler, when_not_ready=True, desc=desc)
