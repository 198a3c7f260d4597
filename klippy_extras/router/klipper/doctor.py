# ROUTER_DOCTOR and router/doctor: this instance and its links checked from
# both sides where it can, each problem with its fix. This part gathers
# (the peers' answers, the socket files, both configs); the checks are
# sansio/diagnosis.py.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import logging, os, stat
from ..common import gcode_text
from ..link.link import wait_reply
from ..link.sansio import rpc
from ..peer.sansio import identity
from ..peer.sansio.session import CLIENT_VERSION
from .commands import CommandBase
from .sansio import diagnosis

ASK_TIMEOUT = 5.   # s: how long the peers' answers are waited for


def socket_state(options):
    """What is at a local peer's socket path (None for a url: peer)."""
    if options.remote is not None:
        return None
    path = os.path.expanduser(options.socket)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        folder = os.path.dirname(path) or '.'
        return 'missing' if os.path.isdir(folder) else 'no_dir'
    return 'ok' if stat.S_ISSOCK(mode) else 'not_socket'


def subscription_labels(peer):
    """[(where it comes from, objects)] of each subscription to a peer."""
    out = []
    for sub in peer.subs.subs.values():
        if sub.from_config:
            label = "subscribe: of [router %s]" % (peer.name,)
        elif sub.runs_on:
            label = "the subscription of '%s'" % (sub.runs_on,)
        elif sub.callback:
            label = "ROUTER_OBJECTS_SUBSCRIBE CALLBACK=%s" % (sub.callback,)
        else:
            label = "ROUTER_OBJECTS_SUBSCRIBE"
        out.append((label, sub.objects))
    return out


def _field(reply, key):
    return reply.get(key) if isinstance(reply, dict) else None


class Doctor(CommandBase):
    """ROUTER_DOCTOR and the router/doctor endpoint. Both wait for the
    peers' answers as ROUTER_GCODE_SCRIPT WAIT=1 does: yielding to the
    reactor, each request with its deadline."""
    def __init__(self, printer, peers, callers, own_socket):
        CommandBase.__init__(self, printer, peers, None, None)
        self.callers = callers
        self.own_socket = own_socket
        webhooks = printer.lookup_object('webhooks')
        webhooks.register_endpoint('router/doctor', self._handle_doctor)

    def commands(self):
        """(name, handler, help) of each command, for registering."""
        return (('ROUTER_DOCTOR', self.cmd_ROUTER_DOCTOR,
                 self.cmd_ROUTER_DOCTOR_help),)

    cmd_ROUTER_DOCTOR_help = ("Check this instance and its links; print"
                              " each problem with its fix: [TIMEOUT=<s>]")
    def cmd_ROUTER_DOCTOR(self, gcmd):
        timeout = self._timeout(gcmd, ASK_TIMEOUT)
        findings = self._findings(timeout, gcmd.error)
        gcmd.respond_info(diagnosis.report(findings), log=False)

    def _handle_doctor(self, web_request):
        self.callers.check(web_request, 'query')
        value = web_request.get('timeout', ASK_TIMEOUT)
        timeout = None if isinstance(value, bool) else (
            gcode_text.parse_seconds(value))
        if timeout is None:
            raise web_request.error("router/doctor: timeout must be a number"
                                    " of seconds between 0.001 and 86400")
        findings = self._findings(timeout, web_request.error)
        web_request.send({'findings': [
            {'peer': f.peer, 'kind': f.kind, 'problem': f.problem,
             'fix': f.fix} for f in findings]})

    def _findings(self, timeout, error):
        # Data from peers is anything: a check it trips is a bug to log,
        # never an exception out of a handler
        try:
            return self._examine(timeout)
        except Exception:
            logging.exception("router: doctor failed")
            raise error("ROUTER_DOCTOR failed (see klippy.log)")

    def _examine(self, timeout):
        peers = sorted(self.peers.values(), key=lambda p: p.name)
        asked = {p.name: self._questions(p) for p in peers}
        answers = self._ask(peers, asked, timeout)
        facts = [self._facts(p, answers[p.name], asked[p.name])
                 for p in peers]
        return diagnosis.examine(self._here(), facts, self._same_socket)

    # What the peers are asked
    def _questions(self, peer):
        """[(key, method, params)] to ask a connected peer."""
        if not peer.session.session_up:
            return []
        out = []
        if peer.has_module:
            out.append(('info', 'router/info',
                        {'name': self.peers.own_name}))
        if peer.ready and peer.permits('query'):
            # The objects it is followed for (their fields now), and its
            # config (what it needs of this instance)
            objects = {'configfile': ['config']}
            for sub in peer.subs.subs.values():
                objects.update(dict.fromkeys(sub.objects))
            out += [('objects', 'objects/list', {}),
                    ('status', 'objects/query', {'objects': objects})]
        return out

    def _ask(self, peers, asked, timeout):
        """Sends every question at once and waits for every answer or the
        timeout: {peer name: {key: result, None for an error}}; a key
        missing is a question not answered in time."""
        got = {p.name: {} for p in peers}
        sends = [(p, key, method, params) for p in peers
                 for key, method, params in asked[p.name]]
        def send(done):
            left = [len(sends)]
            def answer(name, key):
                def on_reply(result, error):
                    if error is None:
                        got[name][key] = result
                    elif getattr(error, 'kind', None) != rpc.TIMEOUT:
                        got[name][key] = None   # answered with an error
                    left[0] -= 1
                    if not left[0]:
                        done(None, None)
                return on_reply
            for peer, key, method, params in sends:
                on_reply = answer(peer.name, key)
                try:
                    peer.request(method, params, on_reply, timeout)
                except rpc.NotSent:
                    on_reply(None, 'not sent')
            if not sends:
                done(None, None)
        wait_reply(self.reactor, send, timeout)
        return got

    # What is known
    def _facts(self, peer, got, asked):
        s, options = peer.session, peer.options
        info = got.get('info')
        status = _field(got.get('status'), 'status')
        return diagnosis.PeerFacts(
            name=peer.name, socket=options.socket,
            url=options.remote.url if options.remote is not None else None,
            phase=s.phase, state=s.state, message=s.state_message,
            last_error=peer.link.last_error, socket_state=socket_state(
                options), has_module=s.has_module,
            known=(info.get('known') is not False if isinstance(info, dict)
                   else s.remote_known),
            remote_allow=s.remote_allow, allow=peer.allow,
            allow_where=("[router]" if peer.known_by == 'discovered'
                         else "[router %s]" % (peer.name,)),
            subs=subscription_labels(peer), info=info,
            objects=_field(got.get('objects'), 'objects'), status=status,
            config=_field(_field(status, 'configfile'), 'config'),
            unanswered=[key for key, _m, _p in asked if key not in got],
            kid=(identity.klipper_id(s.info, peer.address)
                 if isinstance(s.info, dict) else None))

    def _here(self):
        message, state = self.printer.get_state_message()
        own = self.peers.self_peer
        info = own.session.info if own is not None else None
        configfile = self.printer.lookup_object('configfile', None)
        config = None
        if configfile is not None:
            config = configfile.get_status(self.reactor.monotonic()).get(
                'config')
        return diagnosis.Here(
            name=self.peers.own_name, mesh=self.callers.mesh,
            socket=self.own_socket, state=state, message=message,
            config=config, callers=self.callers.calling(),
            allow_unlisted=bool(self.callers.allow_unlisted),
            peer_names=sorted(self.peers),
            kid=(identity.klipper_id(info, own.address)
                 if isinstance(info, dict) else None),
            version=CLIENT_VERSION)

    def _same_socket(self, path):
        """Is a peer config's socket: path (any text) this instance's own
        socket?"""
        if not (self.own_socket and path):
            return False
        try:
            return os.path.realpath(os.path.expanduser(path)) == (
                self.own_socket)
        except (ValueError, OSError):    # a NUL in it, a loop of links
            return False
