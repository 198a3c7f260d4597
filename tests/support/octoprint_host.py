# The PyPI OctoPrint package as a print host on one klippy's pty
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import http.client, json, os, secrets, subprocess, time
import urllib.error, urllib.request

from harness import ROOT, free_port, terminate, wait_until

OCTOPRINT = os.environ.get('OCTOPRINT_BIN') or os.path.join(
    ROOT, '.venv', 'octoprint', 'bin', 'octoprint')

# Bundled plugins that reach the network or are not needed here
DISABLED_PLUGINS = ['announcements', 'softwareupdate', 'tracking',
                    'errortracking', 'pluginmanager', 'discovery',
                    'achievements', 'health_check', 'backup',
                    'virtual_printer', 'gcodeviewer']


class OctoPrint:
    """OctoPrint on 127.0.0.1, connected to node's pty with Klipper's
    recommended serial settings (disconnectOnErrors false: "cancel any
    ongoing prints but stay connected"), logging every serial line."""
    def __init__(self, node, disconnect_on_errors=False):
        self.node = node
        self.dir = os.path.join(node.dir, 'octoprint')
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.apikey = secrets.token_hex(16).upper()
        self.serial_log = os.path.join(self.dir, 'logs', 'serial.log')
        self.octoprint_log = os.path.join(self.dir, 'logs', 'octoprint.log')
        self.stdout_log = os.path.join(self.dir, 'stdout.log')
        self.proc = None
        self._write_config(disconnect_on_errors)

    @staticmethod
    def available():
        return os.path.exists(OCTOPRINT)

    def _write_config(self, disconnect_on_errors):
        # JSON is YAML: no yaml module needed in the test venv
        config = {
            'server': {
                'host': '127.0.0.1', 'port': self.port, 'firstRun': False,
                'onlineCheck': {'enabled': False},
                'pluginBlacklist': {'enabled': False},
                'pythonEolCheck': {'enabled': False},
                'ipCheck': {'enabled': False},
            },
            'serial': {
                'port': self.node.pty, 'baudrate': 250000,
                'additionalPorts': [self.node.pty],
                'autoconnect': True, 'log': True,
                'disconnectOnErrors': disconnect_on_errors,
                # OctoPrint's own default: M112 on a firmware error that
                # disconnects (only with disconnectOnErrors true)
                'sendM112OnError': True,
                # klippy in file-output mode ends a G4 at once; OctoPrint
                # waiting out each dwell itself gives a print of G4 lines
                # the duration it would have on a real printer
                'blockWhileDwelling': True,
            },
            'plugins': {
                '_disabled': DISABLED_PLUGINS,
                'tracking': {'enabled': False},
                'errortracking': {'enabled': False},
            },
            'accessControl': {'autologinLocal': False},
            'temperature': {'profiles': []},
        }
        with open(os.path.join(self.dir, 'config.yaml'), 'w') as f:
            json.dump(config, f, indent=1)
        # The password hash is never checked: the tests use the API key
        users = {'_version': 2, 'admin': {
            'password': '$argon2id$unused', 'active': True,
            'groups': ['admins', 'users'], 'permissions': [],
            'apikey': self.apikey, 'settings': {}}}
        with open(os.path.join(self.dir, 'users.yaml'), 'w') as f:
            json.dump(users, f, indent=1)

    def start(self, timeout=40.):
        """Starts the server and waits until it is operational on the pty
        (autoconnect); raises AssertionError with its log tail if not."""
        out = open(self.stdout_log, 'ab')
        self.proc = subprocess.Popen(
            [OCTOPRINT, 'serve', '--iknowwhatimdoing', '--basedir', self.dir,
             '--host', '127.0.0.1', '--port', str(self.port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        try:
            self.wait_operational(timeout)
        except AssertionError:
            self.stop()
            raise
        return self

    def _why(self):
        return "\n--- octoprint stdout ---\n%s\n--- serial.log ---\n%s" % (
            tail(self.stdout_log, 30), tail(self.serial_log, 30))

    def wait_operational(self, timeout=30.):
        deadline = time.monotonic() + timeout
        last = None
        retry = time.monotonic() + 5.
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("octoprint exited (rc %s)%s"
                                     % (self.proc.returncode, self._why()))
            try:
                last = self.connection()['current']['state']
            except (OSError, ValueError, KeyError,
                    http.client.HTTPException) as e:
                # Before its web server is up, a port taken by another
                # process answers this way, or not at all
                last = repr(e)
            if last == 'Operational':
                return
            if last.startswith(('Closed', 'Offline', 'Error')) \
                    and time.monotonic() > retry:
                # Autoconnect gave up (e.g. pty not there yet): ask again
                retry = time.monotonic() + 5.
                try:
                    self.connect()
                except OSError:
                    pass
            time.sleep(.25)
        raise AssertionError("octoprint not operational within %s s (state %r)"
                             "%s" % (timeout, last, self._why()))

    # REST API
    def url(self, path):
        return 'http://127.0.0.1:%d%s' % (self.port, path)

    def request(self, method, path, body=None, data=None, headers=None,
                timeout=10.):
        """Returns (http status, decoded body or None)."""
        hdrs = {'X-Api-Key': self.apikey}
        if body is not None:
            data = json.dumps(body).encode()
            hdrs['Content-Type'] = 'application/json'
        hdrs.update(headers or {})
        req = urllib.request.Request(self.url(path), data=data,
                                     headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors='replace')

    def get(self, path):
        status, body = self.request('GET', path)
        if status != 200:
            raise OSError("GET %s: HTTP %s %r" % (path, status, body))
        return body

    def post(self, path, body):
        status, res = self.request('POST', path, body)
        if status not in (200, 201, 204):
            raise OSError("POST %s: HTTP %s %r" % (path, status, res))
        return res

    def connection(self):
        return self.get('/api/connection')

    def connect(self):
        self.post('/api/connection', {
            'command': 'connect', 'port': self.node.pty, 'baudrate': 250000,
            'autoconnect': True})

    def printer_state(self):
        """The state text ('Operational', 'Printing', 'Cancelling', ...)."""
        return self.connection()['current']['state']

    def job(self):
        return self.get('/api/job')

    def command(self, *commands):
        """Sends raw G-code lines through the serial link, as the terminal
        tab does."""
        self.post('/api/printer/command', {'commands': list(commands)})

    def upload(self, name, text, select=False, print_=False):
        boundary = '----router' + secrets.token_hex(8)
        parts = []
        parts.append('--%s\r\nContent-Disposition: form-data; name="file";'
                     ' filename="%s"\r\nContent-Type:'
                     ' application/octet-stream\r\n\r\n' % (boundary, name))
        body = parts[0].encode() + text.encode() + (
            '\r\n--%s\r\nContent-Disposition: form-data; name="select"'
            '\r\n\r\n%s\r\n--%s\r\nContent-Disposition: form-data;'
            ' name="print"\r\n\r\n%s\r\n--%s--\r\n' % (
                boundary, 'true' if select else 'false', boundary,
                'true' if print_ else 'false', boundary)).encode()
        status, res = self.request(
            'POST', '/api/files/local', data=body, headers={
                'Content-Type': 'multipart/form-data; boundary=' + boundary})
        if status not in (200, 201):
            raise OSError("upload %s: HTTP %s %r" % (name, status, res))
        return res

    def select_and_print(self, name):
        self.post('/api/files/local/' + name,
                  {'command': 'select', 'print': True})

    def wait_job_done(self, timeout=60.):
        """Waits until the job has left Printing/Cancelling; returns the
        last /api/job answer."""
        def done():
            job = self.job()
            return job if job['state'] not in (
                'Printing', 'Starting', 'Starting print from SD',
                'Cancelling', 'Pausing', 'Resuming', 'Finishing') else None
        return wait_until(done, timeout, interval=.25, what="job finished")

    # Logs
    def serial_lines(self):
        """serial.log as (direction, text) pairs: 'send' for lines
        OctoPrint sent, 'recv' for lines it received, 'info' else."""
        out = []
        try:
            with open(self.serial_log, errors='replace') as f:
                lines = f.read().splitlines()
        except OSError:
            return out
        for line in lines:
            # "2024-01-01 12:00:00,123 - Send: N5 G4 P150*95"
            _, sep, rest = line.partition(' - ')
            if not sep:
                continue
            if rest.startswith('Send: '):
                out.append(('send', rest[6:]))
            elif rest.startswith('Recv: '):
                out.append(('recv', rest[6:]))
            else:
                out.append(('info', rest))
        return out

    def serial_text(self):
        return tail(self.serial_log, None)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc)


def tail(path, n):
    try:
        with open(path, errors='replace') as f:
            lines = f.read().splitlines()
    except OSError:
        return '(no %s)' % (path,)
    return '\n'.join(lines if n is None else lines[-n:])
