# Fuzzed ROUTER_* G-code and router/* endpoint parameters against real
# klippy, from a seeded generator (the same cases every run): only errors,
# never a shutdown or a traceback through the module.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import math, os, random, re, time
import pytest
from harness import ApiError, Mesh, log_excerpt, log_problems
from reliability import assert_still_works
from macros import printing

pytestmark = pytest.mark.reliability


FUZZ_MACROS = printing('FUZZ_CB')

# Never fuzzed: commands (and API methods) that legitimately stop or block
# a printer, and nested router commands (mutual waits, event storms).
DANGEROUS = ('M112', 'RESTART', 'EMERGENCY', 'SHUTDOWN', 'SAVE_CONFIG',
             'ROUTER', 'G4', 'M400', 'M109', 'M190', 'TEMPERATURE_WAIT',
             'PRINT_FILE', 'PAUSE', 'GCODE/')
# Nor, on a G-code line, parameter names a value could smuggle in
SMUGGLED = ('SCRIPT', 'GCODE', 'WAIT', 'TIMEOUT', 'CALLBACK')


def safe(text, line=True):
    up = text.upper()
    deny = DANGEROUS + SMUGGLED if line else DANGEROUS
    return not any(d in up for d in deny) and '\n' not in text \
        and '\\' not in text


HOSTILE = [
    '', ' ', '"', "'", '"unbalanced', "'unbalanced", 'a"b', "a'b", '""',
    "''", '=', '==', 'a=b', '=x', ';', '#', '*', 'x;y', 'x#y', 'x*y',
    ';comment', 'nan', 'NaN', 'inf', '-inf', 'Infinity', '-1', '0', '1',
    '2', '0.0', '1e309', '-1e309', '1e-309', '0x10', '1_000', '\u0661',
    '86400', '86400.1', '0.0005', 'None', 'null', 'true', '{}', '[]',
    '{lane}', '{', '}', '{{x}}', '%s', '%(x)s', '\u00e9\u2713\u4e2d',
    '\U0001f642', '\u202e', '\ufeff', '\u200b', '\x00', '\x1b[31m', '\x7f',
    '\r', '\t', 'a\tb', 'x' * 64, 'x' * 65, 'x' * 101, 'A' * 5000,
    'led', 'LED', ' led ', 'led;', 'led#', 'main', 'Main', 'nobody',
    'fake', 'FUZZ_CB', 'fuzz_cb', 'M118', 'M118 hi', 'FUZZ_CB A=1',
    'FUZZ_CB A={lane}', 'FUZZ_CB A={missing}', 'NOT_A_COMMAND',
    'print_stats', 'print_stats:state', 'toolhead,webhooks:state',
    'heater_generic chamber:temperature|target', 'a:', ':b', 'a:|',
    'a:b c', ',,,', 'webhooks', 'gcode_macro FUZZ_CB', 'ev', 'ev2',
    'a.b:c/d-e', 'k=v,k2=v2', 'k', 'k=', '=v', 'EVENT=x', 'SOURCE=x',
]
ALPHABET = ('abcxyzABCXYZ019_-.:/|,=;#*"\' \t\r{}[]()%$&!?<>~`^@'
            '\x00\x01\x1b\x7f\u00e9\u2713\u4e2d\U0001f642\u202e\ufeff')
KEYS = ['TARGET', 'SCRIPT', 'WAIT', 'TIMEOUT', 'OBJECTS', 'CALLBACK',
        'EVENT', 'GCODE', 'CONTEXT', 'IF_READY']
COMMAND_KEYS = {
    'ROUTER_PRINTERS_LIST': [],
    'ROUTER_GCODE_SCRIPT': ['TARGET', 'SCRIPT', 'WAIT', 'TIMEOUT',
                            'IF_READY'],
    'ROUTER_OBJECTS_LIST': ['TARGET', 'TIMEOUT'],
    'ROUTER_OBJECTS_QUERY': ['TARGET', 'OBJECTS', 'TIMEOUT'],
    'ROUTER_OBJECTS_SUBSCRIBE': ['TARGET', 'OBJECTS', 'CALLBACK'],
    'ROUTER_OBJECTS_UNSUBSCRIBE': ['TARGET', 'CALLBACK'],
    'ROUTER_EVENT_SUBSCRIBE': ['EVENT', 'GCODE'],
    'ROUTER_EVENT_UNSUBSCRIBE': ['EVENT', 'GCODE'],
    'ROUTER_EVENT_TRIGGER': ['EVENT', 'CONTEXT'],
}
EXTRA_KEYS = ['LANE', 'X', 'lane', 'EVENT', 'SOURCE', 'A_B', '_', '1X',
              'K' * 64, 'K' * 70, 'é', 'A-B']
SAFE_SCRIPTS = ['M118 fuzz', 'M118 "quoted text"', "M118 'x y'",
                'M118 a\\nM118 b', 'M118 \u00e9\u2713', 'FUZZ_CB A=1',
                'NOT_A_COMMAND', 'M118', '  ', '\\n', 'M118 x;y', '""']
SAFE_HANDLERS = ['M118', 'FUZZ_CB', 'FUZZ_CB A=1 B={lane}',
                 'FUZZ_CB A={missing}', 'NOT_A_COMMAND', 'RESPOND MSG=x',
                 'fuzz_cb a=1', 'FUZZ_CB "A=x y"', 'FUZZ_CB A', '9X',
                 'FUZZ_CB A="unbal']
SAFE_METHODS = ['info', 'objects/list', 'list_endpoints', 'no/such/method',
                'M118']
METHOD_KEYS = {
    'router/gcode/script': ['target', 'script'],
    'router/event/subscribe': ['event', 'gcode', 'callback_type',
                               'callback_target'],
    'router/event/trigger': ['event', 'context'],
    'router/printers/list': ['gcode_callback'],
    'router/objects/list': ['target', 'gcode_callback'],
    'router/objects/query': ['target', 'objects', 'gcode_callback'],
    'router/objects/subscribe': ['target', 'objects', 'gcode_callback'],
    'router/event/deliver': ['event', 'context', 'source'],
    'router/mesh': ['kind', 'origin', 'source', 'id', 'event', 'context',
                    'skip', 'hops', 'to', 'cards'],
    'router/mesh/link': ['name'],
    'router/mesh/ack': ['ack'],
    'router/gcode': ['script', 'output'],
    'router/info': ['name'],
}


class RandomDraw:
    """The draws the generators make, from a seeded random generator.
    Hypothesis (when installed) only picks the seeds: its own draws favour
    small and repeated values, which on a real mesh means fewer distinct
    cases for the same time."""
    def __init__(self, rng):
        self.rng = rng

    def choice(self, seq):
        return self.rng.choice(list(seq))

    def integer(self, lo, hi):
        return self.rng.randint(lo, hi)

    def boolean(self, p=.5):
        return self.rng.random() < p

    def text(self, alphabet, max_size):
        return ''.join(self.rng.choice(alphabet)
                       for i in range(self.rng.randint(0, max_size)))


# Values a command accepts, so that one hostile parameter at a time also
# reaches the handlers' later checks and the peers.
VALID = {
    'SCRIPT': SAFE_SCRIPTS,
    'WAIT': ['0', '1'],
    'IF_READY': ['0', '1'],
    'TIMEOUT': ['0.5', '5', '30', '0.001'],
    'OBJECTS': ['print_stats', 'print_stats:state', 'toolhead,webhooks:state',
                'gcode_macro FUZZ_CB', 'webhooks:state|state_message'],
    'CALLBACK': ['FUZZ_CB', 'fuzz_cb', ''],
    'EVENT': ['ev', 'ev2', 'EV', 'a.b:c/d-e'],
    'GCODE': SAFE_HANDLERS,
    'CONTEXT': ['k=v,k2=v2', 'lane=2', 'a=x y', ''],
}


def hostile_value(d):
    kind = d.integer(0, 9)
    if kind <= 4:
        return d.choice(HOSTILE)
    if kind <= 6:
        return d.text(ALPHABET, 30)
    if kind == 7:
        return d.choice(HOSTILE) + d.text(ALPHABET, 8) + d.choice(HOSTILE)
    if kind == 8:
        return repr(d.choice([0., -1., 1e300, 3.5, 1e-9, 86400.,
                              float('nan'), float('inf'), 2 ** 64]))
    # Huge or very long: rarely, each costs a 100 KB line
    return d.choice(['y' * 100000, 'n' * 20000 + '"', 'z' * 300])


def gen_value(d, key, names, hostile):
    """names: (this node, its peer)."""
    if key == 'TARGET' and not hostile:
        return d.choice([names[1]] * 4 + [names[1].upper(), names[0]])
    if key in VALID and not hostile:
        return d.choice(VALID[key])
    value = hostile_value(d)
    if key == 'SCRIPT':
        value = 'M118 ' + value
    if not safe(value):
        value = 'x'
    return value


def quote(d, value):
    style = d.integer(0, 13)
    if style == 0:
        return value
    if style == 1:
        return '"%s"' % (value,)
    if style == 2:
        return "'%s'" % (value,)
    if re.match(r'^[A-Za-z0-9_.:|,/-]+$', value):
        return value
    # As Klipper's shlex reads it: the value arrives as it is
    return '"%s"' % (value.replace('\\', '\\\\').replace('"', '\\"'),)


def gen_line(d, names):
    cmd = d.choice(sorted(COMMAND_KEYS))
    words = [cmd if d.boolean(.9) else cmd.lower()]
    keys = list(COMMAND_KEYS[cmd])
    if d.boolean(.3):
        keys.append(d.choice(KEYS + EXTRA_KEYS))
    # Valid parameters, one hostile one, or all hostile
    mode = d.integer(0, 9)
    bad = d.integer(0, len(keys)) if mode < 5 else None
    for i, key in enumerate(keys):
        if d.boolean(.05):
            continue   # missing
        hostile = mode >= 8 or i == bad
        value = gen_value(d, key.upper(), names, hostile)
        words.append('%s=%s' % (key if d.boolean(.9) else key.lower(),
                                quote(d, value)))
    if d.boolean(.05):
        words.append(d.choice(['junk', '=', '"', ';', 'A=1 B', 'A==']))
    return ' '.join(words).replace('\n', ' ')


def gen_json(d, depth=0):
    kind = d.integer(0, 11)
    if kind == 0 or depth > 3:
        return d.choice([None, True, False, 0, -1, 1, 2 ** 63, -2 ** 70,
                         1e308, float('nan'), float('inf'), 1.5, ''])
    if kind <= 3:
        return d.choice(HOSTILE + SAFE_HANDLERS + SAFE_METHODS)
    if kind == 4:
        return d.text(ALPHABET, 20)
    if kind == 5:
        return [gen_json(d, depth + 1) for i in range(d.integer(0, 3))]
    if kind == 6:
        return {d.choice(['a', '', '5x', 'lane', 'EVENT', 'source',
                          'print_stats', 'toolhead', 'k' * 80]):
                gen_json(d, depth + 1) for i in range(d.integer(0, 3))}
    if kind == 7:
        inner = 1
        for i in range(d.integer(1, 60)):
            inner = [inner] if d.boolean() else {'a': inner}
        return inner
    if kind == 8:
        return d.choice(['y' * 100000, 'x' * 5000])
    if kind == 9:
        return d.choice(['led', 'main', 'LED', 'nobody', 'FUZZ_CB', 'ev',
                         'gcode', 'webhook'])
    if kind == 10:
        return {'print_stats': d.choice([None, ['state'], [5], 'x', []]),
                d.choice(['toolhead', 'webhooks', '']): None}
    return d.choice(SAFE_SCRIPTS)


def json_safe(value):
    if isinstance(value, str):
        return safe(value, line=False) or value in SAFE_SCRIPTS
    if isinstance(value, list):
        return all(json_safe(v) for v in value)
    if isinstance(value, dict):
        return all(json_safe(k) and json_safe(v) for k, v in value.items())
    return True


VALID_JSON = {
    'script': SAFE_SCRIPTS,
    'gcode': SAFE_HANDLERS,
    'event': ['ev', 'ev2', 'EV'],
    'callback_type': ['gcode', 'gcode', 'gcode', 'webhook'],
    'gcode_callback': ['FUZZ_CB', 'fuzz_cb'],
    'objects': ['print_stats,toolhead', {'print_stats': None},
                {'webhooks': ['state'], 'toolhead': None}],
    'context': [{'lane': 2, 'note': 'a b'}, {}, {'k': [1, {'x': None}]}],
}


def gen_request(d, names):
    method = d.choice(sorted(METHOD_KEYS))
    params = {}
    keys = list(METHOD_KEYS[method])
    if d.boolean(.3):
        keys.append(d.choice(['extra', '', 'target', 'params', 'x' * 100]))
    mode = d.integer(0, 9)
    bad = d.integer(0, len(keys)) if mode < 5 else None
    for i, key in enumerate(keys):
        if d.boolean(.05):
            continue
        hostile = mode >= 8 or i == bad
        if key in ('target', 'callback_target', 'source', 'name') \
                and not hostile:
            value = d.choice([names[1]] * 4 + [names[1].upper(), names[0]])
        elif key in VALID_JSON and not hostile:
            value = d.choice(VALID_JSON[key])
        else:
            value = gen_json(d)
        if not json_safe(value):
            value = 'x'
        params[key] = value
    return method, params


class LogWatch:
    """The new part of a node's log since the last look."""
    def __init__(self, node):
        self.node = node
        self.offset = os.path.getsize(node.log)

    def new(self):
        with open(self.node.log, 'rb') as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode('utf-8', 'replace')


@pytest.fixture(scope='module')
def fuzz_pair(runtime):
    mesh = Mesh(runtime).add_full_mesh(('main', 'led'), FUZZ_MACROS)
    with mesh.running():
        yield mesh


class Fuzzer:
    """Sends one case and checks at once that the node is still sane, so
    a failure names the input that caused it."""
    def __init__(self, mesh):
        self.mesh = mesh
        self.watch = {n: LogWatch(node) for n, node in mesh.nodes.items()}
        self.count = 0
        self.errors = 0

    def check(self, what):
        for name, node in self.mesh.nodes.items():
            assert node.alive(), "%s died after %r:\n%s" % (
                name, what, node.log_tail(60))
            # Anything a command queued on the peer has run before this
            info = node.client.request('info', {}, timeout=10.)
            assert info['state'] == 'ready', "%s is %s after %r:\n%s" % (
                name, info['state'], what, node.log_tail(60))
            text = self.watch[name].new()
            problems = log_problems(text)
            assert not problems, "%s: %s after %r:\n%s" % (
                name, problems, what, log_excerpt(text, problems))

    def gcode(self, node_name, line, seed):
        self.count += 1
        what = (seed, node_name, line[:300])
        try:
            self.mesh[node_name].gcode(line, timeout=10.)
        except ApiError:
            self.errors += 1
        except TimeoutError:
            raise AssertionError("no reply (a hang) to %r" % (what,))
        self.check(what)

    def request(self, node_name, method, params, seed):
        self.count += 1
        what = (seed, node_name, method, str(params)[:300])
        # Mainline Klipper decodes requests with msgspec, which drops one
        # holding NaN or Infinity without a reply: it never reaches the
        # module. Other flavors pass it on.
        nonfinite = has_nonfinite(params)
        try:
            self.mesh[node_name].client.request(
                method, params, timeout=3. if nonfinite else 10.)
        except ApiError:
            self.errors += 1
        except TimeoutError:
            if not nonfinite:
                raise AssertionError("no reply (a hang) to %r" % (what,))
        self.check(what)


def has_nonfinite(value):
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def finish_fuzz(mesh, fuzzer, minimum):
    assert fuzzer.count >= minimum, fuzzer.count
    # Mostly errors, but not only: the generators reach the handlers
    assert 0 < fuzzer.errors < fuzzer.count, (fuzzer.errors, fuzzer.count)
    for node in mesh.nodes.values():
        node.gcode("ROUTER_OBJECTS_UNSUBSCRIBE TARGET=%s" % (
            'led' if node.name == 'main' else 'main',))
    mesh.wait_links()
    fuzzer.check('after the fuzzing')
    assert_still_works(mesh['main'], 'led')
    assert_still_works(mesh['led'], 'main')


GCODE_CASES = 400
ENDPOINT_CASES = 200
PAIRS = [('main', 'led'), ('led', 'main')]   # (node, its peer)


def fuzz_gcode_case(fuzzer, seed):
    d = RandomDraw(random.Random(seed))
    names = d.choice(PAIRS)
    fuzzer.gcode(names[0], gen_line(d, names), seed)


def fuzz_endpoint_case(fuzzer, seed):
    d = RandomDraw(random.Random(seed))
    names = d.choice(PAIRS)
    method, params = gen_request(d, names)
    fuzzer.request(names[0], method, params, seed)


@pytest.mark.parametrize('case,cases,rng_seed', [
    (fuzz_gcode_case, GCODE_CASES, 20240611),
    (fuzz_endpoint_case, ENDPOINT_CASES, 20240612)],
    ids=['gcode', 'endpoints'])
def test_fuzz(fuzz_pair, case, cases, rng_seed):
    fuzzer = Fuzzer(fuzz_pair)
    for seed in random.Random(rng_seed).sample(range(2 ** 32), cases):
        case(fuzzer, seed)
    finish_fuzz(fuzz_pair, fuzzer, cases)


def test_endpoint_script_on_the_instance_itself(fuzz_pair):
    """router/gcode/script naming the instance that serves it runs the
    script there and replies at once."""
    for name in ('main', 'led'):
        node = fuzz_pair[name]
        watch = LogWatch(node)
        t0 = time.monotonic()
        try:
            result = node.client.request('router/gcode/script', {
                'target': name, 'script': 'M118 self'}, timeout=5.)
        except TimeoutError:
            pytest.fail("router/gcode/script with target '%s' on %s: no"
                        " reply within 5 s" % (name, name))
        assert result == {}
        assert time.monotonic() - t0 < 2.
        assert not log_problems(watch.new())


@pytest.mark.parametrize('callback', [5, True, ['FUZZ_CB'], {'a': 1}],
                         ids=['int', 'bool', 'list', 'dict'])
def test_endpoint_callbacks_of_wrong_type(fuzz_pair, callback):
    """A gcode_callback that is no string is an error, nothing else."""
    main = fuzz_pair['main']
    watch = LogWatch(main)
    for method in ('router/printers/list', 'router/objects/list',
                   'router/objects/query'):
        t0 = time.monotonic()
        try:
            main.client.request(method, {
                'target': 'led', 'objects': {'print_stats': None},
                'gcode_callback': callback}, timeout=5.)
        except ApiError as e:
            assert 'internal error' not in str(e).lower(), (method, str(e))
        except TimeoutError:
            pytest.fail("%s with gcode_callback=%r: no reply within 5 s"
                        % (method, callback))
        else:
            pytest.fail("%s accepted gcode_callback=%r" % (method, callback))
        assert time.monotonic() - t0 < 2.
        text = watch.new()
        problems = log_problems(text)
        assert not problems, "%s with gcode_callback=%r: %s\n%s" % (
            method, callback, problems, log_excerpt(text, problems))
    assert main.state() == 'ready'
