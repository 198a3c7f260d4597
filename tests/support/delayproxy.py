# A TCP relay that delays every chunk by a fixed time, in each direction,
# order kept: the delay of a long link, where the kernel has no netem.
#   python delayproxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT MS
#       [COUNT_FILE]
# COUNT_FILE gets the number of connections accepted so far.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
import asyncio, collections, sys


async def pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = collections.deque()
    ready = asyncio.Event()
    async def send():
        while True:
            while not queue:
                ready.clear()
                await ready.wait()
            due, data = queue.popleft()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()
    sender = asyncio.ensure_future(send())
    try:
        while True:
            data = await reader.read(65536)
            queue.append((loop.time() + delay, data or None))
            ready.set()
            if not data:
                break
        await sender
    except (OSError, asyncio.CancelledError):
        sender.cancel()
        writer.close()


async def main(host, port, target_host, target_port, delay, count_file):
    accepted = [0]
    async def serve(reader, writer):
        accepted[0] += 1
        if count_file:
            with open(count_file, 'w') as f:
                f.write('%d\n' % (accepted[0],))
        try:
            treader, twriter = await asyncio.open_connection(target_host,
                                                             target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, twriter, delay),
                             pipe(treader, writer, delay),
                             return_exceptions=True)
    server = await asyncio.start_server(serve, host, port)
    async with server:
        await server.serve_forever()


if __name__ == '__main__':
    args = sys.argv[1:]
    asyncio.run(main(args[0], int(args[1]), args[2], int(args[3]),
                     float(args[4]) / 1000., args[5] if len(args) > 5
                     else None))
