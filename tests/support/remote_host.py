# A second "host" for the remote-peer tests: a network namespace with its
# own address on a veth pair, and the ways a network fails (a link that
# goes down, packet loss, delay)
#
# This kernel has no netem qdisc (tc says "Specified qdisc kind is
# unknown"): loss comes from nftables in the namespace (real TCP
# retransmissions), delay from delayproxy.py, a TCP relay that holds every
# chunk for the delay in each direction.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import itertools, os, re, shutil, subprocess, sys
from harness import terminate, wait_until, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
_numbers = itertools.count(1)


def _run(*args, check=True):
    return subprocess.run(list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=check)


def why_unavailable():
    """None when this process may create network namespaces, else why."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the tests as root)"
    if shutil.which('ip') is None:
        return "no 'ip' command (Debian: iproute2)"
    name = 'krprobe%d' % (os.getpid(),)
    probe = _run('ip', 'netns', 'add', name, check=False)
    if probe.returncode != 0:
        return "cannot create a network namespace here: %s" % (
            probe.stdout.decode(errors='replace').strip(),)
    _run('ip', 'netns', 'del', name, check=False)
    return None


def loss_available():
    return shutil.which('nft') is not None


def _namespaces():
    out = _run('ip', 'netns', 'list', check=False).stdout.decode()
    return [line.split()[0] for line in out.splitlines() if line.split()]


def clean_stale():
    """Removes the namespaces (and their cables) of test processes that
    are gone: one killed mid-test leaves them in the kernel."""
    for name in _namespaces():
        m = re.match(r'kr(\d+)_(\d+)$', name)
        if m is None or os.path.exists('/proc/%s' % (m.group(1),)):
            continue
        _run('ip', 'link', 'del', 'krh' + m.group(2), check=False)
        _run('ip', 'netns', 'del', name, check=False)
        shutil.rmtree(os.path.join('/etc/netns', name), ignore_errors=True)


def _free_number():
    """A number whose cable, namespace and /24 no one uses."""
    taken = {int(m.group(1)) for m in (re.match(r'kr\d+_(\d+)$', n)
                                       for n in _namespaces()) if m}
    start = (os.getpid() * 7 + next(_numbers)) % 250
    for i in range(250):
        n = (start + i) % 250 + 1
        if n not in taken and not os.path.exists('/sys/class/net/krh%d'
                                                 % (n,)):
            return n
    raise RuntimeError("no free test network number")


class Netns:
    """Host side HOST_IP, namespace side IP, a /24 of their own."""
    def __init__(self):
        clean_stale()
        n = _free_number()
        self.name = 'kr%d_%d' % (os.getpid(), n)
        self.host_if, self.ns_if = 'krh%d' % (n,), 'krn%d' % (n,)
        self.host_ip, self.ip = '10.213.%d.1' % (n,), '10.213.%d.2' % (n,)
        self.prefix = ['ip', 'netns', 'exec', self.name]
        self._procs = []
        _run('ip', 'netns', 'add', self.name)
        try:
            self._wire()
        except Exception:
            self.close()
            raise

    def _wire(self):
        _run('ip', 'link', 'add', self.host_if, 'type', 'veth', 'peer',
             'name', self.ns_if)
        _run('ip', 'link', 'set', self.ns_if, 'netns', self.name)
        _run('ip', 'addr', 'add', self.host_ip + '/24', 'dev', self.host_if)
        _run('ip', 'link', 'set', self.host_if, 'up')
        self.ns('ip', 'addr', 'add', self.ip + '/24', 'dev', self.ns_if)
        self.ns('ip', 'link', 'set', self.ns_if, 'up')
        self.ns('ip', 'link', 'set', 'lo', 'up')

    def slow_name_server(self):
        """Names resolved in the namespace wait for a name server that
        never answers (ip netns exec mounts /etc/netns/NAME/resolv.conf
        over /etc/resolv.conf)."""
        etc = os.path.join('/etc/netns', self.name)
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, 'resolv.conf'), 'w') as f:
            f.write("nameserver %s.77\noptions timeout:3 attempts:2\n"
                    % (self.ip.rsplit('.', 1)[0],))

    def ns(self, *args, check=True):
        return _run(*(self.prefix + list(args)), check=check)

    # Failures
    def link(self, up):
        """The namespace's cable: down is a partition (no RST, no FIN:
        connections go half-open)."""
        self.ns('ip', 'link', 'set', self.ns_if, 'up' if up else 'down')
        if up:
            self.ns('ip', 'route', 'replace', self.host_ip.rsplit('.', 1)[0]
                    + '.0/24', 'dev', self.ns_if, check=False)

    def loss(self, percent):
        """Drops percent % of the packets the namespace receives and
        sends (0 removes the rule)."""
        self.ns('nft', 'delete', 'table', 'inet', 'krloss', check=False)
        if not percent:
            return
        self.ns('nft', 'add', 'table', 'inet', 'krloss')
        for hook in ('input', 'output'):
            self.ns('nft', 'add', 'chain', 'inet', 'krloss', hook,
                    '{ type filter hook %s priority 0; }' % (hook,))
            self.ns('nft', 'add', 'rule', 'inet', 'krloss', hook, 'oifname'
                    if hook == 'output' else 'iifname', self.ns_if,
                    'numgen', 'random', 'mod', '100', '<', str(int(percent)),
                    'counter', 'drop')

    def dropped(self):
        """Packets the loss rules dropped so far."""
        out = self.ns('nft', 'list', 'table', 'inet', 'krloss',
                      check=False).stdout.decode()
        return sum(int(w) for w in re.findall(r'counter packets (\d+)', out))

    def delay_proxy(self, target_host, target_port, delay_ms, inside=False,
                    count_file=None):
        """A relay on a new port that delays each direction by delay_ms;
        returns (host, port) to dial. inside: it runs in the namespace.
        count_file: where it writes how many connections it took."""
        host = self.ip if inside else self.host_ip
        port = free_port()
        proc = subprocess.Popen(
            (self.prefix if inside else []) + [
                sys.executable, os.path.join(HERE, 'delayproxy.py'), host,
                str(port), target_host, str(target_port), str(delay_ms)]
            + ([count_file] if count_file else []),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL)
        self._procs.append(proc)
        import socket
        def listening():
            s = socket.socket()
            s.settimeout(.5)
            try:
                s.connect((host, port))
                return True
            except OSError:
                return False
            finally:
                s.close()
        wait_until(listening, 10., what="delay proxy listening")
        return host, port

    def close(self):
        for proc in self._procs:
            terminate(proc)
        _run('ip', 'link', 'del', self.host_if, check=False)
        _run('ip', 'netns', 'del', self.name, check=False)
        shutil.rmtree(os.path.join('/etc/netns', self.name),
                      ignore_errors=True)
