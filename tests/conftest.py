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


def pytest_addoption(parser):
    parser.addoption(
        '--full-reliability', action='store_true', default=False,
        help="run the reliability scenarios at full size (50 kills, 50"
             " restarts of each side, 30 s hung peer, 30 s flood)")


def pytest_configure(config):
    config.addinivalue_line(
        'markers', "reliability: hostile conditions (run alone with"
                   " -m reliability)")
    config._router_figures = []


@pytest.fixture
def full(request):
    return request.config.getoption('--full-reliability')


@pytest.fixture
def figures(request):
    """Tests record measured figures here; they are printed at the end."""
    def record(scenario, **values):
        request.config._router_figures.append((scenario, values))
    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    figures = getattr(config, '_router_figures', [])
    if figures:
        terminalreporter.section("router reliability figures")
        for scenario, values in figures:
            terminalreporter.write_line("%s: %s" % (scenario, ', '.join(
                '%s=%s' % kv for kv in values.items())))
