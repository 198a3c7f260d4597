# pytest fixtures: the Klipper runtime and meshes of real klippy processes
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import pytest
from harness import Runtime, Mesh


@pytest.fixture(scope='session')
def runtime():
    rt = Runtime()
    rt.install_module()
    return rt


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # A failing test shows the logs of every mesh open at that moment:
    # the function's own and the module's shared ones alike
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and Mesh.open:
        rep.sections.append(('klippy logs', ''.join(
            m.log_tails() for m in list(Mesh.open))))


@pytest.fixture
def mesh(runtime):
    m = Mesh(runtime)
    yield m
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
