# [router NAME] and [router event NAME]: one object per section, each
# reading its own options
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os
from ..common import gcode_text
from ..link import url_options as remote_options
from ..mesh.sansio import events
from ..peer.sansio import subscriptions, trust
from ..peer.peer import PeerOptions


class PeerSection:
    """The printer object of a [router NAME] section: a peer this instance
    dials, or this instance itself, which it skips (the same mesh file can
    be included by every instance). It deliberately has no get_status (the
    peer shows in printer.router) and nothing named 'stats' (klippy calls
    every object's stats() once a second)."""
    def __init__(self, config, router):
        name = section_word(config, 1, gcode_text.check_name,
                            "the peer name must be one word of letters,"
                            " digits, '_' and '-', e.g. [router led]")
        macros = router.gcode_macro
        socket, remote = read_address(config)
        options = PeerOptions(
            name=name, socket=socket, remote=remote,
            **link_options(config, router.link_defaults),
            on_connect=macros.load_template(config, 'on_connect', ''),
            on_disconnect=macros.load_template(config, 'on_disconnect', ''),
            serve=config.getboolean('serve_remote_methods', True),
            allow=read_allow(config, default=router.allow))
        standing = standing_subscription(config)
        self.peer = None
        if router.is_this_instance(name, options.socket, config):
            return
        self.peer = router.add_peer(options, config)
        if standing is not None:
            self.peer.subscribe(standing)


# The options of a link: [router] holds the defaults of every [router
# NAME], which may set its own. (default, bounds) each.
LINK_OPTIONS = (
    ('request_timeout', 30., {'above': 0., 'maxval': 86400.}),
    ('reconnect_delay', .1, {'minval': .01, 'maxval': 60.}),
    ('reconnect_max_delay', 1., {'minval': .01, 'maxval': 600.}))


def link_options(config, defaults=None):
    """{option: value} of the link options of a section; defaults (such a
    dict, from [router]) replace the built-in defaults."""
    return {name: config.getfloat(
        name, default if defaults is None else defaults[name], **bounds)
            for name, default, bounds in LINK_OPTIONS}


def read_address(config):
    """(socket, None) for a peer on this host, (None, RemoteOptions) for
    one behind a Moonraker: exactly one of socket: and url:."""
    sock, url = config.get('socket', None), config.get('url', None)
    if (sock is None) == (url is None):
        raise config.error("Section '%s': give either 'socket' (an instance"
                           " on this host) or 'url' (one behind its"
                           " Moonraker), not %s" % (
                               config.get_name(),
                               'both' if sock else 'neither'))
    if sock is not None:
        return os.path.expanduser(sock), None
    return None, remote_options.read(config, url)


def section_word(config, index, check, hint):
    """The last word of the section name, checked; a config error with
    the hint when it is not the index-th word or not valid."""
    parts = config.get_name().split()
    word = check(parts[index]) if len(parts) == index + 1 else None
    if word is None:
        raise config.error("Section '%s': %s" % (config.get_name(), hint))
    return word


def read_allow(config, option='allow', default=trust.ACTIONS):
    """A set of trust.ACTIONS; 'none' or an empty value is none."""
    allow = config.get(option, None)
    if allow is None:
        return frozenset(default)
    words = [a.strip().lower() for a in allow.split(',') if a.strip()]
    words = [a for a in words if a != 'none']
    bad = [a for a in words if a not in trust.ACTIONS]
    if bad:
        raise config.error(
            "Option '%s' in section '%s': unknown %s (choose from %s, or"
            " none)" % (option, config.get_name(), ', '.join(bad),
                        ', '.join(trust.ACTIONS)))
    return frozenset(words)


def standing_subscription(config):
    """subscribe/on_update: a subscription that lives with the config."""
    text = config.get('subscribe', None)
    callback = config.get('on_update', '').strip().upper()
    if text is None:
        if callback:
            raise config.error("Section '%s': on_update needs a 'subscribe'"
                               " option" % (config.get_name(),))
        return None
    try:
        objects = subscriptions.parse_objects(text)
        subscriptions.check_followable(objects)
    except ValueError as e:
        raise config.error(
            "Option 'subscribe' in section '%s': %s (expected e.g."
            " print_stats:state, heater_generic chamber:temperature)"
            % (config.get_name(), e))
    if callback and not gcode_text.MACRO_RE.match(callback):
        raise config.error("Option 'on_update' in section '%s': '%s' is not"
                           " a macro name" % (config.get_name(), callback))
    return subscriptions.Subscription(callback, objects, from_config=True)


class EventSection:
    """The printer object of a [router event NAME] section: handlers that
    exist from start-up."""
    def __init__(self, config, router):
        event = section_word(config, 2, events.check_event,
                             "give one event name of letters, digits and"
                             " '_.:/-', e.g. [router event filament_loaded]")
        self.event = event
        router.eventbus.add_config_handlers(config, event)


def load_section(config, router):
    parts = config.get_name().split()
    if len(parts) >= 2 and parts[1] == 'event':
        return EventSection(config, router)
    return PeerSection(config, router)
