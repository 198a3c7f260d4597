# Who a Klipper is, from what it says of itself, without I/O: instances
# that reach one Klipper by different addresses (its socket here, its
# Moonraker's url there, two spellings of one url) agree it is one.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import hashlib, json


def klipper_id(info, address):
    """What identifies a Klipper, from its own info reply: the host, its
    config and log files; the same however it is reached. A reply that
    gives none of them is known by its address."""
    keys = ('hostname', 'config_file', 'log_file')
    values = [info.get(k) if isinstance(info, dict) else None for k in keys]
    if not any(isinstance(v, str) and v for v in values):
        values = ['address', address]
    text = json.dumps([v if isinstance(v, str) else None for v in values])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def describe_info(info, address):
    """The same identity in words, for the log."""
    if isinstance(info, dict) and isinstance(info.get('config_file'), str):
        return "%s:%s" % (info.get('hostname'), info.get('config_file'))
    return address
