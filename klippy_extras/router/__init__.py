# Klipper Router: a peer-to-peer mesh of Klipper instances on one host
#
# [router] describes this instance; each [router NAME] a peer it dials;
# each [router event NAME] handlers of a mesh event.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
from .router import Router
from .klipper.sections import load_section


def load_config(config):
    return Router(config)


def load_config_prefix(config):
    # [router NAME] may come before [router] in the file
    router = config.get_printer().load_object(config, 'router')
    return load_section(config, router)
