# Request ids, replies and per-request deadlines, without I/O
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import heapq


class RequestTracker:
    """Pending requests of one connection. Callbacks get (result, error):
    exactly one of them is None, and each callback is returned once."""
    def __init__(self):
        self._next_id = 1
        self._pending = {}
        self._deadlines = []

    def __len__(self):
        return len(self._pending)

    def add(self, method, params, callback, deadline):
        req_id = self._next_id
        self._next_id += 1
        self._pending[req_id] = (callback, deadline)
        heapq.heappush(self._deadlines, (deadline, req_id))
        return req_id, {'id': req_id, 'method': method, 'params': params}

    def cancel(self, req_id):
        self._pending.pop(req_id, None)

    def is_pending(self, req_id):
        return req_id in self._pending

    def pending_ids(self):
        return set(self._pending)

    def resolve(self, msg):
        """Returns (callback, result, error) for a reply to a pending
        request, None for anything else."""
        req_id = msg.get('id')
        if type(req_id) is not int or req_id not in self._pending:
            return None
        if 'result' not in msg and 'error' not in msg:
            return None
        callback, deadline = self._pending.pop(req_id)
        if 'error' in msg:
            return callback, None, error_text(msg['error'])
        return callback, msg['result'], None

    def next_deadline(self, default):
        heap = self._deadlines
        while heap and heap[0][1] not in self._pending:
            heapq.heappop(heap)
        return heap[0][0] if heap else default

    def expire(self, now):
        """Pops requests whose deadline passed: [(callback, deadline)]."""
        out = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, req_id = heapq.heappop(heap)
            entry = self._pending.pop(req_id, None)
            if entry is not None:
                out.append(entry)
        return out

    def fail_all(self):
        out = [cb for cb, dl in self._pending.values()]
        self._pending.clear()
        del self._deadlines[:]
        return out


def error_text(error):
    # Klipper replies {"error": "WebRequestError", "message": "..."}
    if isinstance(error, dict):
        msg = error.get('message')
        if isinstance(msg, str) and msg:
            return msg.strip()
    return ("%.200s" % (error,)).strip() or "unknown error"
