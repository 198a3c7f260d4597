# pytest fixtures: the Klipper runtime and meshes of real klippy processes
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import os, sys
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runtime, Mesh  # noqa: E402


@pytest.fixture(scope='session')
def runtime():
    rt = Runtime()
    rt.install_module()
    return rt


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, 'rep_' + rep.when, rep)


def _dump_logs(request, mesh):
    rep = getattr(request.node, 'rep_call', None)
    if rep is not None and rep.failed:
        for node in mesh.nodes.values():
            sys.stderr.write("\n===== log of %s =====\n%s\n"
                             % (node.name, node.log_tail(60)))


@pytest.fixture
def mesh(runtime, request):
    m = Mesh(runtime)
    yield m
    _dump_logs(request, m)
    m.close()
