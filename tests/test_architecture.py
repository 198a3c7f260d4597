# The rules of docs/Architecture.md, checked on the module's source: the
# layers import downwards only, sansio/ modules do no I/O, no part below
# the top receives the Router or calls a method through two objects of
# the module, functions and classes stay small, and vulture finds no dead
# code but Klipper's entry points.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import ast, os, subprocess, sys
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, 'klippy_extras', 'router')
LAYERS = ('common', 'link', 'peer', 'mesh', 'klipper')
TOP = ('__init__.py', 'router.py', os.path.join('klipper', 'sections.py'))
# What sansio/ may import besides other sansio/ modules
SANSIO_STDLIB = {'collections', 'difflib', 'hashlib', 'json', 're', 'shlex', 'math',
                 'heapq', 'binascii', 'ssl', 'random', 'enum',
                 'wsproto'}   # the websocket protocol, itself without I/O
# Klipper's entry points, which only Klipper calls (vulture cannot know)
VULTURE_WHITELIST = (
    "load_config  # Klipper calls it for [router]\n"
    "load_config_prefix  # ... and for each [router NAME]\n")


def sources():
    for root, _, files in os.walk(MODULE):
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(root, name)
                with open(path) as f:
                    yield os.path.relpath(path, MODULE), ast.parse(f.read())


def imported(rel, node):
    """The module path (as a list) a relative import names."""
    base = rel.split(os.sep)[:-1]
    if node.level > 1:
        base = base[:len(base) - (node.level - 1)]
    return base + (node.module.split('.') if node.module else [])


def test_layers_import_downwards_and_sansio_does_no_io():
    bad = []
    for rel, tree in sources():
        parts = rel.split(os.sep)
        layer = parts[0] if parts[0] in LAYERS else None
        sansio = 'sansio' in parts
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = imported(rel, node)
                if layer and target and target[0] in LAYERS and (
                        LAYERS.index(target[0]) > LAYERS.index(layer)):
                    bad.append("%s imports %s" % (rel, '.'.join(target)))
                if sansio and 'sansio' not in target and target != [
                        'common'] and target != ['common', 'gcode_text']:
                    bad.append("%s (sansio) imports %s" % (
                        rel, '.'.join(target)))
            elif sansio and isinstance(node, (ast.Import, ast.ImportFrom)):
                names = ([a.name for a in node.names]
                         if isinstance(node, ast.Import) else [node.module])
                bad += ["%s (sansio) imports %s" % (rel, n) for n in names
                        if n.split('.')[0] not in SANSIO_STDLIB]
    assert not bad, bad


def test_no_part_below_the_top_receives_the_router():
    bad = []
    for rel, tree in sources():
        if rel in TOP:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                bad += ["%s: %s(%s)" % (rel, node.name, a.arg)
                        for a in node.args.args if a.arg == 'router']
            if isinstance(node, ast.Attribute) and node.attr == 'router' \
                    and isinstance(node.value, ast.Name) \
                    and node.value.id == 'self':
                bad.append("%s: self.router" % (rel,))
    assert not bad, bad


# Objects that are not the module's: Klipper's, the standard library's
FOREIGN = {'reactor', 'printer', 'gcode', 'webhooks', 'sock', 'conn',
           'web_request', 'gcmd', 'config', 'logging', 'os', 'json', 're',
           'collections', 'math', 'random', 'time', 'ssl', 'hashlib',
           'socket', 'glob', 'stat', 'errno', 'shlex', 'binascii',
           'threading', 'weakref', 'heapq', 'template', '_conn', '_ev',
           'completion', 'macro', '_mutex', 'trust', 'wsproto', 'h11'}
CONTAINER_METHODS = {'get', 'items', 'values', 'keys', 'pop', 'add',
                     'discard', 'append', 'remove', 'update', 'clear',
                     'setdefault', 'join', 'split', 'strip', 'startswith',
                     'format', 'copy', 'popitem', 'popleft', 'extend',
                     'count', 'lower', 'upper', 'encode', 'decode',
                     'replace', 'match', 'fullmatch', 'search', 'sub'}


def chain(node):
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return list(reversed(names + [node.id])) if isinstance(
        node, ast.Name) else None


def test_no_method_is_called_through_two_objects_of_the_module():
    bad = []
    for rel, tree in sources():
        if rel in TOP:
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)):
                continue
            names = chain(node.func)
            if not names or names[-1] in CONTAINER_METHODS:
                continue
            objects = names[1:-1] if names[0] == 'self' else names[:-1]
            if names[0] in FOREIGN or any(o in FOREIGN for o in objects):
                continue
            if len(objects) >= 2:
                bad.append("%s:%d %s()" % (rel, node.lineno,
                                           '.'.join(names)))
    # The callback of a served caller is run on that caller's peer
    assert bad == ["klipper/old_bridge.py:%d who.peer.run_line()" % (
        n,) for n in _lines('klipper/old_bridge.py', 'who.peer.run_line(')]


def _lines(rel, text):
    with open(os.path.join(MODULE, rel)) as f:
        return [i for i, line in enumerate(f, 1) if text in line]


def test_functions_and_classes_are_small():
    big = []
    for rel, tree in sources():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                size = node.end_lineno - node.lineno + 1
                limit = 250 if isinstance(node, ast.ClassDef) else 40
                if size > limit:
                    big.append("%s: %s %d lines" % (rel, node.name, size))
    assert not big, big


def test_vulture_finds_no_dead_code(tmp_path):
    pytest.importorskip('vulture')
    whitelist = tmp_path / 'whitelist.py'
    whitelist.write_text(VULTURE_WHITELIST)
    out = subprocess.run([sys.executable, '-m', 'vulture', MODULE,
                          str(whitelist)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    assert out.returncode == 0, out.stdout
