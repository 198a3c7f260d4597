# Put first on klippy's path by a test: the module as an older release
# would speak, its router protocol version '0.2.9' (everything else is the
# module of this tree). Runs the sitecustomize it shadows, if any.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import importlib.abc, importlib.machinery, os, sys

OLD_VERSION = '0.2.9'


class _OldVersion(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if not name.endswith('router.peer.sansio.session'):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return None
        exec_module = spec.loader.exec_module
        def patched(module):
            exec_module(module)
            module.CLIENT_VERSION = OLD_VERSION
        spec.loader.exec_module = patched
        return spec


sys.meta_path.insert(0, _OldVersion())

# The shim of tests/py_compat (Python 3.12+), which this file shadows
_compat = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'py_compat', 'sitecustomize.py')
if os.path.exists(_compat):
    with open(_compat) as _f:
        exec(compile(_f.read(), _compat, 'exec'))
