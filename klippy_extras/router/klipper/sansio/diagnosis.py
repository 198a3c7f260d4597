# What ROUTER_DOCTOR finds, from what the doctor gathered: checks that only
# look at data (this instance, its peers, their replies, both configs).
# No I/O: the doctor (klipper/doctor.py) reads and asks; this decides.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import collections, re
from ...common.gcode_text import clean_text
from ...peer.sansio.session import PING_TIMEOUT, Phase

# One problem, and what to do about it. peer: the instance it is about
# (this instance's own name for a problem of its own config).
Finding = collections.namedtuple('Finding', 'peer kind problem fix')

# This instance: name, mesh, its own socket (or None), its Klipper state
# and message, its raw config (configfile's 'config'), the instances that
# named themselves on its API connections, whether allow_unlisted: admits
# unlisted instances, its peers' names, the identity of its own Klipper
# (or None) and its protocol version.
Here = collections.namedtuple(
    'Here', 'name mesh socket state message config callers allow_unlisted'
    ' peer_names kid version')

# One peer. socket/url: how it is dialed; phase, state, message,
# last_error: its link; socket_state: what is at a local socket path ('ok',
# 'no_dir', 'missing', 'not_socket'); known, remote_allow: does it list
# this instance and what it lets it do there; allow, allow_where: what this
# config lets it do here and where that is set; subs: [(label, objects)];
# info, objects, status, config: its router/info, objects/list, the status
# of the objects it is followed for, its raw config (None: not asked or
# not answered); unanswered: what it did not answer in time; kid: the
# identity of its Klipper (or None).
PeerFacts = collections.namedtuple(
    'PeerFacts', 'name socket url phase state message last_error'
    ' socket_state has_module known remote_allow allow allow_where subs'
    ' info objects status config unanswered kid')

# The text of link/ws_transport.py's config error for url: sections
REMOTE_PACKAGES = 'wsproto and h11'
INSTALL_FIX = ("run this project's install.sh again on that host (it"
               " installs wsproto and h11 into Klipper's Python), or"
               " ~/klippy-env/bin/pip install wsproto h11; then RESTART")

# ROUTER_* commands with a TARGET, and what each needs on the target
_COMMAND_RE = re.compile(r'\bROUTER_(GCODE_SCRIPT|OBJECTS_QUERY|OBJECTS_LIST'
                         r'|OBJECTS_SUBSCRIBE)\b([^\n]*)', re.I)
_TARGET_RE = re.compile(r'\bTARGET=([A-Za-z0-9_-]+)(?=[\s\'"]|$)', re.I)
_EVENT_RE = re.compile(r'\bROUTER_EVENT_TRIGGER\b', re.I)
_ACTION_OF = {'GCODE_SCRIPT': 'gcode', 'OBJECTS_QUERY': 'query',
              'OBJECTS_LIST': 'query', 'OBJECTS_SUBSCRIBE': 'subscribe'}


def _text(value, limit=60):
    """Text from another instance, fit for one console line."""
    text = clean_text(value)
    return text if len(text) <= limit else text[:limit] + '...'


def _options(config, owner=None):
    """(section, option, text) of a raw config, whatever it holds. The
    section [router <owner>] is left out: in a mesh file that every
    instance includes, the one it names skips it."""
    if not isinstance(config, dict):
        return
    for section, options in sorted(config.items(), key=lambda kv: str(
            kv[0])):
        if not isinstance(options, dict) or (
                str(section).split() == ['router', owner]):
            continue
        for option, text in sorted(options.items(), key=lambda kv: str(
                kv[0])):
            if isinstance(text, str):
                yield str(section), str(option), text


def _where(section, option):
    return "[%s] %s" % (_text(section, 60), _text(option, 30))


def config_targets(config, owner):
    """[(target, action, where)]: every ROUTER_* command with a literal
    TARGET in the config of instance owner (macros, hooks, ...), and what
    it needs there."""
    out = []
    for section, option, text in _options(config, owner):
        for m in _COMMAND_RE.finditer(text):
            target = _TARGET_RE.search(m.group(2))
            if target is not None:
                out.append((target.group(1).lower(),
                            _ACTION_OF[m.group(1).upper()],
                            _where(section, option)))
    return out


def event_trigger(config, owner):
    """Where the config of instance owner triggers events
    (ROUTER_EVENT_TRIGGER), or None."""
    for section, option, text in _options(config, owner):
        if _EVENT_RE.search(text):
            return _where(section, option)
    return None


def sections_for(config, same_socket):
    """The names of the [router NAME] sections of a config whose socket:
    same_socket(path) says is this instance's."""
    names = []
    for section, option, text in _options(config):
        parts = section.split()
        if (len(parts) == 2 and parts[0] == 'router' and option == 'socket'
                and parts[1] != 'event' and same_socket(text.strip())):
            names.append(parts[1].lower())
    return names


# This instance on its own
def own_findings(here):
    out = []
    if here.state in ('error', 'shutdown') and (
            REMOTE_PACKAGES in here.message):
        out.append(Finding(
            here.name, 'remote_packages', "this Klipper cannot start: its"
            " config has url: peers, and its Python lacks wsproto and h11",
            INSTALL_FIX))
    if here.socket is None:
        out.append(Finding(
            here.name, 'no_api_socket', "this klippy runs without an API"
            " socket (-a): no peer can reach it", "start klippy with -a"
            " <path> (Moonraker's klippy_uds_address), and give that path"
            " as socket: in the [router %s] section of its peers"
            % (here.name,)))
    unlisted = set(here.callers) - set(here.peer_names) - {here.name}
    for name in sorted(unlisted):
        if not here.allow_unlisted:
            out.append(Finding(
                name, 'not_listed_here', "'%s' calls this instance, which"
                " does not list it: everything it asks is refused" % (name,),
                "add [router %s] (its socket: or url:) to this config, or"
                " admit it with allow_unlisted: in [router]" % (name,)))
    return out


def target_findings(here):
    """Literal TARGETs in this config that name no instance it knows."""
    out, seen = [], set()
    # G-code and objects go to peers only (an instance known through the
    # mesh is no TARGET)
    known = set(here.peer_names) | {here.name}
    for target, action, where in config_targets(here.config, here.name):
        if target in known or target in seen:
            continue
        seen.add(target)
        out.append(Finding(
            here.name, 'unknown_target', "%s names TARGET=%s, which is"
            " not a peer of this instance" % (where, target),
            "correct the TARGET, or add [router %s] to this config"
            % (target,)))
    return out


# The link to one peer
def link_findings(p):
    phase = p.phase
    if phase is Phase.DISCONNECTED:
        return [_not_connected(p)]
    if phase is Phase.UNRESPONSIVE:
        return [Finding(
            p.name, 'not_responding', "connected, but it has not answered"
            " for %.0f s" % (PING_TIMEOUT,), "look at '%s': its klippy is"
            " stopped, hung or overloaded (its klippy.log, systemctl"
            " status); the link recovers when it answers" % (p.name,))]
    if phase is Phase.NOT_READY:
        return [_not_ready(p)]
    if phase is Phase.READY and p.unanswered:
        return [Finding(
            p.name, 'no_answer', "ready, but it did not answer %s in time"
            % (', '.join(p.unanswered),), "it may be busy (a long G-code"
            " or a heating wait): run ROUTER_DOCTOR again later, or with a"
            " larger TIMEOUT")]
    return []   # ready, or in its handshake (a matter of milliseconds)


def _not_connected(p):
    error = p.last_error or 'no connection yet'
    where = "[router %s]" % (p.name,)
    if p.url is not None:
        return Finding(
            p.name, 'not_connected', "not connected: %s" % (error,),
            "check url: (and api_key) in %s, and that the Moonraker of '%s'"
            " runs and can be reached from this host (Troubleshooting.md,"
            " Peers on other hosts)" % (where, p.name))
    folder = p.socket.rsplit('/', 1)[0] if '/' in p.socket else '.'
    if p.socket_state == 'no_dir':
        return Finding(
            p.name, 'socket_dir_missing', "the folder of its socket, %s,"
            " does not exist" % (folder,), "correct socket: in %s: the path"
            " given to the -a option of its klippy" % (where,))
    if p.socket_state == 'not_socket':
        return Finding(
            p.name, 'not_a_socket', "%s is a file, not a socket"
            % (p.socket,), "socket: in %s must be the API socket of its"
            " klippy (the path of its -a option), not another file"
            % (where,))
    if p.socket_state == 'missing':
        return Finding(
            p.name, 'no_socket', "no socket at %s (its Klipper is not"
            " running?)" % (p.socket,), "start the Klipper of '%s' (klippy"
            " with -a %s), or correct socket: in %s" % (
                p.name, p.socket, where))
    return _dial_failed(p, error, where)


def _dial_failed(p, error, where):
    if 'refused' in error:
        return Finding(
            p.name, 'not_listening', "nothing listens at %s (its klippy"
            " stopped or crashed and left its socket file)" % (p.socket,),
            "start the Klipper of '%s' again (its klippy.log says why it"
            " stopped)" % (p.name,))
    if 'permission' in error:
        return Finding(
            p.name, 'not_connected', "not connected: %s" % (error,),
            "run both Klippers as one user, or give this one access to %s"
            " (Kalico: --api-server-group, --api-server-file-mode)"
            % (p.socket,))
    return Finding(
        p.name, 'not_connected', "not connected: %s" % (error,),
        "check socket: in %s and the klippy.log of '%s'" % (where, p.name))


def _not_ready(p):
    first = _text(p.message.split('\n')[0], 100)
    if p.state == 'startup':
        return Finding(
            p.name, 'not_ready', "its Klipper is starting%s" % (
                ": " + first if first else ""), "wait; if it stays so, its"
            " klippy.log says what it waits for (an MCU?)")
    if REMOTE_PACKAGES in p.message:
        return Finding(
            p.name, 'remote_packages', "its Klipper cannot start: its"
            " config has url: peers, and its Python lacks wsproto and h11",
            INSTALL_FIX)
    return Finding(
        p.name, 'klipper_error', "its Klipper is in %s: %s" % (
            p.state, first or '(no message)'), "fix the cause on '%s', then"
        " restart it: ROUTER_GCODE_SCRIPT TARGET=%s SCRIPT=FIRMWARE_RESTART"
        " (RESTART after a config change)" % (p.name, p.name))


# Who the peer is, and whether it knows this instance
def identity_findings(here, p):
    info = p.info
    if not isinstance(info, dict):
        return []
    out = []
    name = info.get('name')
    if name == here.name:
        out.append(Finding(
            p.name, 'same_name', "the instance dialed as '%s' is named"
            " '%s' too, as this one" % (p.name, here.name), "give each"
            " instance its own name: in its [router] section"))
    elif name != p.name:
        out.append(Finding(
            p.name, 'name_mismatch', "dialed as '%s', it calls itself '%s'"
            % (p.name, _text(name, 40)), "rename [router %s] to [router %s]"
            " in this config, or set name: %s in the [router] section of"
            " that instance" % (p.name, _text(name, 40), p.name)))
    mesh = info.get('mesh', 'default')
    if mesh != here.mesh:
        out.append(Finding(
            p.name, 'mesh_mismatch', "it is in mesh '%s', this instance in"
            " '%s'" % (_text(mesh, 40), here.mesh), "set one mesh: in the"
            " [router] section of both (discover: takes only its own mesh),"
            " or remove [router %s] if it belongs to another printer"
            % (p.name,)))
    version = info.get('version')
    if version != here.version:
        out.append(Finding(
            p.name, 'version_mismatch', "it runs version %s of the router"
            " protocol, this instance %s" % (
                _text(version, 20) if version else '(older, unnamed)',
                here.version), "update the module on both to the same"
            " version (git pull, then install.sh) and restart both"))
    return out


def listing_findings(here, p, same_socket):
    """A peer that does not list this instance, or lists it by another
    name (same_socket(path): is that this instance's socket?)."""
    others = [n for n in sections_for(p.config, same_socket)
              if n != here.name]
    if others:
        return [Finding(
            p.name, 'called_otherwise', "'%s' lists this instance as '%s'"
            % (p.name, _text(others[0], 40)), "rename [router %s] to"
            " [router %s] in the config of '%s'" % (
                _text(others[0], 40), here.name, p.name))]
    if not p.has_module or p.known is not False:
        return []
    sock = " with socket: %s" % (here.socket,) if here.socket else ""
    return [Finding(
        p.name, 'not_listed_there', "'%s' does not list this instance: it"
        " refuses everything from '%s'" % (p.name, here.name),
        "add [router %s]%s to the config of '%s'" % (here.name, sock,
                                                     p.name))]


# Subscriptions to objects the peer does not have
def subscription_findings(p):
    if not isinstance(p.objects, list):
        return []       # not asked (not ready, no query) or no answer
    names = set(n for n in p.objects if isinstance(n, str)) | {'webhooks'}
    status = p.status if isinstance(p.status, dict) else {}
    out = []
    for label, objects in p.subs:
        for obj, fields in sorted(objects.items()):
            if obj not in names:
                out.append(Finding(
                    p.name, 'unknown_object', "%s follows '%s', an object"
                    " '%s' does not have" % (label, obj, p.name), "correct"
                    " the object name (ROUTER_OBJECTS_LIST TARGET=%s lists"
                    " them), or add its section to the config of '%s'"
                    % (p.name, p.name)))
                continue
            values = status.get(obj)
            missing = [f for f in fields or () if isinstance(values, dict)
                       and f not in values]
            if missing:
                out.append(Finding(
                    p.name, 'unknown_field', "%s follows %s:%s, a field"
                    " '%s' does not have" % (label, obj, missing[0], obj),
                    "correct the field (ROUTER_OBJECTS_QUERY TARGET=%s"
                    " OBJECTS=\"%s\" shows them)" % (p.name, obj)))
    return out


# What each side's config needs of the other's allow:
def _first_refused(needs, allowed):
    """The first place of each action in needs [(action, where)] that
    allowed does not grant."""
    out = collections.OrderedDict()
    for action, where in needs:
        if action not in allowed and action not in out:
            out[action] = where
    return out.items()


def _now(allowed):
    return ', '.join(sorted(allowed)) or 'nothing'


def refused_there_findings(here, p):
    """This config needs something of a peer whose allow: refuses it."""
    info = p.info if isinstance(p.info, dict) else {}
    allowed = info.get('allow', p.remote_allow)
    if (not p.has_module or p.known is False
            or not isinstance(allowed, (list, frozenset))):
        return []   # not its router's say, or it does not list this one
    needs = [('subscribe', label) for label, objects in p.subs[:1]]
    needs += [(action, where) for target, action, where
              in config_targets(here.config, here.name) if target == p.name]
    events = event_trigger(here.config, here.name)
    if events is not None:
        needs.append(('events', events))
    return [Finding(
        p.name, 'refused_there', "%s needs %s on '%s', which does not"
        " accept %s from '%s'" % (where, action, p.name, action, here.name),
        "add %s to allow: in the [router %s] section of the config of '%s'"
        " (now: %s)" % (action, here.name, p.name, _now(allowed)))
            for action, where in _first_refused(needs, allowed)]


def refused_here_findings(here, p):
    """The peer's config needs something that this config's allow: for
    it refuses (known when it lets this instance read its config)."""
    if not isinstance(p.config, dict):
        return []
    needs = [(action, where) for target, action, where
             in config_targets(p.config, p.name) if target == here.name]
    section = p.config.get('router %s' % (here.name,))
    if isinstance(section, dict) and 'subscribe' in section:
        needs.append(('subscribe', "[router %s] subscribe" % (here.name,)))
    events = event_trigger(p.config, p.name) if p.has_module else None
    if events is not None:
        needs.append(('events', events))
    return [Finding(
        p.name, 'refused_here', "the config of '%s' needs %s here (%s),"
        " which this config does not allow it" % (p.name, action, where),
        "add %s to allow: in %s of this config (now: %s)" % (
            action, p.allow_where, _now(p.allow)))
            for action, where in _first_refused(needs, p.allow)]


# Two sections that reach one Klipper
def duplicate_findings(here, peers):
    """{peer name: finding} of the peers that reach this instance's own
    Klipper, or one an earlier peer reaches."""
    out, seen = {}, {}
    for p in peers:
        if p.kid is None:
            continue
        if p.kid == here.kid:
            out[p.name] = Finding(
                p.name, 'peer_is_this_instance', "%s reaches this"
                " instance's own Klipper" % (p.socket or p.url,),
                "remove [router %s] from this config" % (p.name,))
        elif p.kid in seen:
            out[p.name] = Finding(
                p.name, 'same_klipper', "it is the Klipper that '%s'"
                " reaches too" % (seen[p.kid],), "keep one of [router %s]"
                " and [router %s]" % (seen[p.kid], p.name))
        else:
            seen[p.kid] = p.name
    return out


def examine(here, peers, same_socket):
    """Every finding: this instance's own, then each peer's (by name)."""
    out = own_findings(here) + target_findings(here)
    peers = sorted(peers, key=lambda p: p.name)
    duplicates = duplicate_findings(here, peers)
    for p in peers:
        dup = duplicates.get(p.name)
        if dup is not None:
            out.append(dup)
            if dup.kind == 'peer_is_this_instance':
                continue    # nothing else of it is a peer's
        out += link_findings(p)
        out += identity_findings(here, p)
        out += listing_findings(here, p, same_socket)
        out += subscription_findings(p)
        out += refused_there_findings(here, p)
        out += refused_here_findings(here, p)
    return out


def report(findings):
    """The console text of ROUTER_DOCTOR."""
    if not findings:
        return "Router doctor: no problems found"
    return '\n'.join(["Router doctor: %d finding(s)" % (len(findings),)] + [
        "%s: %s. Fix: %s" % (f.peer, f.problem, f.fix) for f in findings])
