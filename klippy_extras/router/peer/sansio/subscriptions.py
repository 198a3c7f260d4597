# Subscriptions to one peer's objects: merging, the mirror, and what each
# callback gets. No I/O.
#
# Klipper keeps a single objects/subscribe per connection (a second one
# replaces the first), so every local subscription to a peer is merged into
# one request, and each update is split again per callback.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import difflib, json, re

MAX_OBJECTS = 100
MAX_SUBSCRIPTIONS = 32     # per peer: each is a callback per update


def parse_objects(text):
    """'print_stats:state, heater_generic chamber:temperature|target, toolhead'
    -> {'print_stats': ['state'], 'heater_generic chamber': [...],
        'toolhead': None}   (None: every field). Raises ValueError."""
    objects = {}
    for entry in text.replace('\n', ',').split(','):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, fields = entry.partition(':')
        name = ' '.join(name.split())
        if not name:
            raise ValueError("entry '%s' has no object name" % (entry,))
        if sep:
            flist = [f.strip() for f in fields.split('|')]
            if not all(flist) or any(' ' in f for f in flist):
                raise ValueError("entry '%s': give fields as"
                                 " object:field|field" % (entry,))
        else:
            flist = None
        merge_fields(objects, name, flist)
        if len(objects) > MAX_OBJECTS:
            raise ValueError("more than %d objects" % (MAX_OBJECTS,))
    if not objects:
        raise ValueError("no objects given")
    return objects


def merge_fields(objects, name, fields):
    """Adds an object's fields (None: every field) to a map of objects to
    sorted fields: every field wins over a list."""
    if name in objects and (objects[name] is None or fields is None):
        objects[name] = None
    elif name in objects:
        objects[name] = sorted(set(objects[name]) | set(fields))
    else:
        objects[name] = None if fields is None else sorted(set(fields))


def check_object_map(objects):
    """A map of object names to a list of fields or None (every field),
    as Klipper's objects/* take it: fields sorted, each once. Raises
    ValueError."""
    if not isinstance(objects, dict) or not all(
            isinstance(name, str) and (fields is None or (
                isinstance(fields, list)
                and all(isinstance(f, str) for f in fields)))
            for name, fields in objects.items()):
        raise ValueError("'objects' must map object names to a list of"
                         " fields or null")
    return {n: None if f is None else sorted(set(f))
            for n, f in objects.items()}


def check_followable(objects):
    """Raises ValueError for a map of objects that cannot be followed: a
    peer's router object holds its own mirror, and two routers following
    each other's would nest one level deeper on every update."""
    if 'router' in objects:
        raise ValueError("the router object of a peer cannot be followed"
                         " (it holds that peer's mirror); query it, or read"
                         " its peers on that instance")


def format_objects(objects):
    return ', '.join(name if fields is None else
                     '%s:%s' % (name, '|'.join(fields))
                     for name, fields in sorted(objects.items()))



# What a peer lacks of what is followed there. Klipper answers a
# subscription with {} for an object it does not have and None for a field
# it does not have, as it does for an object without values and a field
# whose value is None: what looks missing is asked again (objects/list,
# then objects/query of the whole object) before it is reported.
def suspects(objects, mirror):
    """(objects answered without a value, {object: fields answered None})
    of objects (name -> fields or None) as mirror holds them."""
    maybe_gone, fields = [], {}
    for name, wanted in sorted(objects.items()):
        values = mirror.get(name) or {}
        if all(v is None for v in values.values()):
            maybe_gone.append(name)
        if wanted is not None:
            nones = [f for f in wanted if values.get(f) is None]
            if nones:
                fields[name] = nones
    return maybe_gone, fields


def find_missing(objects, listed, full):
    """[(object, field or None, a close name or None)] of what the peer
    lacks: listed holds its objects (objects/list), full the whole status
    of the objects followed field by field."""
    out = []
    for name, wanted in sorted(objects.items()):
        if name not in listed:
            out.append((name, None, close_name(name, listed)))
            continue
        have = full.get(name)
        if wanted is None or not isinstance(have, dict):
            continue
        out.extend((name, f, close_name(f, have)) for f in wanted
                   if f not in have)
    return out


def close_name(word, names):
    """The name of names closest to a mistyped word, or None. An object
    'kind name' is compared by its name among those of its kind when
    there are some ('gcode_macro LATER' is not 'gcode_macro MARK')."""
    kind, _, rest = word.partition(' ')
    by_text = {}
    for n in names:
        if isinstance(n, str):
            by_text.setdefault(n.lower(), n)
    if rest:
        same = {n.partition(' ')[2]: real for n, real in by_text.items()
                if n.partition(' ')[0] == kind.lower() and ' ' in n}
        if same:
            close = difflib.get_close_matches(rest.lower(), list(same), 1)
            return same[close[0]] if close else None
    close = difflib.get_close_matches(word.lower(), list(by_text), 1)
    return by_text[close[0]] if close else None


def format_missing(missing):
    """'object print_stat (did you mean print_stats?), field
    print_stats:stat (did you mean state?)'"""
    return ', '.join('%s%s' % (
        'object %s' % (name,) if field is None else 'field %s:%s' % (
            name, field),
        ' (did you mean %s?)' % (close,) if close else '')
        for name, field, close in missing)


def followers(subs, missing, peer_name):
    """Which subscriptions follow something missing, in words."""
    gone = {(name, field) for name, field, _ in missing}
    out = []
    for sub in subs:
        if any((name, None) in gone or any(
                (name, f) in gone for f in fields or ())
               for name, fields in sub.objects.items()):
            out.append(describe_subscription(sub, peer_name))
    return sorted(out)


def describe_subscription(sub, peer_name):
    if sub.from_config:
        return "subscribe: of [router %s]" % (peer_name,)
    if sub.runs_on is not None:
        return "router/objects/subscribe of '%s'" % (sub.runs_on,)
    if sub.callback:
        return "CALLBACK=%s" % (sub.callback,)
    return "ROUTER_OBJECTS_SUBSCRIBE without CALLBACK"

_NON_ALNUM = re.compile(r'[^A-Z0-9]')


def param_name(obj, field):
    """As the old bridge named them: PRINT_STATS_STATE,
    HEATER_GENERIC_CHAMBER_TEMPERATURE (object 'heater_generic chamber')."""
    return _NON_ALNUM.sub('_', ('%s_%s' % (obj, field)).upper())


def param_value(value):
    """The text a callback parameter carries: strings exactly, numbers as
    Python prints them, True/False/None as Jinja shows them, lists and
    dicts as JSON."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return str(value)
    try:
        return json.dumps(value, separators=(',', ':'), sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return '(unprintable)'


class Subscription:
    def __init__(self, callback, objects, from_config=False, runs_on=None):
        self.callback = callback      # macro name (upper case) or ''
        self.objects = objects        # name -> sorted fields or None
        self.from_config = from_config
        self.runs_on = runs_on        # None: here; else a peer's name

    @property
    def key(self):
        return (self.runs_on or '', self.callback)

    def pick(self, status):
        """This subscription's part of a status dict {obj: {field: v}}."""
        out = {}
        for name, fields in self.objects.items():
            values = status.get(name)
            if not isinstance(values, dict) or not values:
                continue
            if fields is None:
                part = dict(values)
            else:
                part = {f: values[f] for f in fields if f in values}
            if part:
                out[name] = part
        return out


class SubscriptionSet:
    def __init__(self):
        self.subs = {}
        self.mirror = {}
        self.version = 0          # changes whenever the mirror may have
        self._fresh = set()

    def __len__(self):
        return len(self.subs)

    def add(self, sub):
        """Adds or replaces (same callback) a subscription. Returns True
        when the merged request to the peer changes. Raises ValueError for
        one that would replace a config subscription, or one too many."""
        old = self.subs.get(sub.key)
        if old is not None and old.from_config and not sub.from_config:
            raise ValueError("the subscription of %s is set in the config"
                             % (sub.callback or 'the mirror',))
        if old is None and len(self.subs) >= MAX_SUBSCRIPTIONS:
            raise ValueError("%d subscriptions to this peer already; remove"
                             " one first" % (len(self.subs),))
        before = self.merged()
        self.subs[sub.key] = sub
        self._fresh.add(sub.key)
        return self.merged() != before

    def remove(self, key):
        before = self.merged()
        self.subs.pop(key, None)
        self._fresh.discard(key)
        after = self.merged()
        self.version += 1
        for name in list(self.mirror):
            if name not in after:
                del self.mirror[name]
            elif after[name] is not None:
                self.mirror[name] = {f: v for f, v in self.mirror[name].items()
                                     if f in after[name]}
        return after != before

    def mark_all_fresh(self):
        self._fresh = set(self.subs)

    def merged(self):
        out = {}
        for sub in self.subs.values():
            for name, fields in sub.objects.items():
                merge_fields(out, name, fields)
        return out

    def apply_snapshot(self, status):
        """The full reply of a (re)subscription. A subscription that is new
        or was re-issued gets every field it follows; the others get only
        what differs from what they saw. Returns [(sub, changes)]."""
        old = self.mirror
        self.mirror = {}
        self._store(status)
        fresh, self._fresh = self._fresh, set()
        out = []
        for key, sub in self.subs.items():
            now = sub.pick(self.mirror)
            if key not in fresh:
                seen = sub.pick(old)
                now = {name: {f: v for f, v in values.items()
                              if seen.get(name, {}).get(f, _MISSING) != v}
                       for name, values in now.items()}
                now = {name: values for name, values in now.items() if values}
            if now:
                out.append((sub, now))
        return out

    def apply_delta(self, status):
        """A subscription update (changed fields only): [(sub, changes)]."""
        self._store(status)
        out = []
        for sub in self.subs.values():
            part = sub.pick(status)
            if part:
                out.append((sub, part))
        return out

    def _store(self, status):
        self.version += 1
        merged = self.merged()
        for name, values in status.items():
            if name not in merged or not isinstance(values, dict):
                continue
            fields = merged[name]
            # An object the peer answers for is in the mirror, even empty
            target = self.mirror.setdefault(name, {})
            for f, v in values.items():
                if fields is None or f in fields:
                    target[f] = v

    def mirror_copy(self):
        return {name: dict(values) for name, values in self.mirror.items()}


_MISSING = object()


def callback_params(peer_name, changes):
    params = {}
    for obj, values in sorted(changes.items()):
        for field, value in sorted(values.items()):
            params[param_name(obj, field)] = param_value(value)
    params['PRINTER'] = peer_name
    return params
