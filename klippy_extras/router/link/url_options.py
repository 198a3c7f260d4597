# The options of a [router NAME] section with url: (a peer behind its
# Moonraker), read and checked at config time
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, ssl
from .sansio import tls, websocket
from .ws_transport import INSTALL_HINT, RemoteOptions, parse_url


def read(config, url):
    name = config.get_name()
    def error(option, text):
        return config.error("Option '%s' in section '%s': %s"
                            % (option, name, text))
    if websocket.load_wsproto() is None:
        raise config.error("Section '%s': %s" % (name, INSTALL_HINT))
    try:
        use_tls, host, port, target = parse_url(url)
    except ValueError as e:
        raise error('url', "%s (got %r)" % (e, url))
    api_key = config.get('api_key', '').strip()
    key_file = config.get('api_key_file', '').strip()
    if api_key and key_file:
        raise config.error("Section '%s': give api_key or api_key_file, not"
                           " both" % (name,))
    if key_file:
        key_file = os.path.expanduser(key_file)
        if not os.access(key_file, os.R_OK):
            raise error('api_key_file', "cannot read %s" % (key_file,))
    context, fingerprint = _tls_options(config, use_tls, error)
    return RemoteOptions(url.strip(), use_tls, host, port, target, api_key,
                         key_file or None, context, fingerprint)


def _tls_options(config, use_tls, error):
    cafile = config.get('tls_ca_file', '').strip()
    pin = config.get('tls_fingerprint', '').strip()
    if not use_tls:
        if cafile or pin:
            raise error('tls_ca_file' if cafile else 'tls_fingerprint',
                        "needs a wss:// url")
        return None, None
    fingerprint = None
    if pin:
        try:
            fingerprint = tls.parse_fingerprint(pin)
        except ValueError as e:
            raise error('tls_fingerprint', str(e))
    cafile = os.path.expanduser(cafile) if cafile else None
    try:
        return tls.make_context(cafile, fingerprint), fingerprint
    except (OSError, ssl.SSLError) as e:
        raise error('tls_ca_file', "cannot load %s: %s" % (cafile, e))
