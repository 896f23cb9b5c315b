#!/usr/bin/env python3
"""Opens N keep-alive client connections to a proxy and holds them idle.

Each connection sends one `GET /` and reads the whole response, so the
proxy has finished a request on it and keeps it as an idle keep-alive
connection (the state a real idle client leaves it in). With --tls each
connection first completes a TLS handshake (TLS 1.3, ALPN http/1.1, no
certificate verification, a full handshake each: no session is reused)
and sends its request over it. Once every
connection has had its answer the script prints one JSON line to stdout:

    {"ready": true, "ok": 9998, "failed": 2, "non200": 0, "seconds": 1.9}

then holds the connections until its stdin is closed (or --hold seconds
pass) and exits. Used by bench.py to measure a proxy's RSS growth for
10,000 idle connections. Standard library only.
"""

import argparse
import asyncio
import json
import os
import resource
import ssl
import sys
import time


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def open_one(host, port, sem, conns, stats, timeout, tls):
    async with sem:
        try:
            # A TLS connection is open once its handshake is done.
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=tls,
                                        server_hostname="localhost" if tls else None),
                timeout)
            writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length:
                await asyncio.wait_for(reader.readexactly(length), timeout)
            if status != 200:
                stats["non200"] += 1
            stats["ok"] += 1
            conns.append(writer)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                ValueError, IndexError) as e:
            stats["failed"] += 1
            stats.setdefault("first_error", repr(e))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--parallel", type=int, default=256,
                    help="connections being opened at once")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="seconds per connect or read")
    ap.add_argument("--hold", type=float, default=60.0,
                    help="most seconds to hold the connections")
    ap.add_argument("--tls", action="store_true",
                    help="TLS connections (no certificate verification)")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.n + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    conns = []
    stats = {"ok": 0, "failed": 0, "non200": 0}
    sem = asyncio.Semaphore(args.parallel)
    tls = tls_context() if args.tls else None
    started = time.monotonic()
    await asyncio.gather(*(open_one(args.host, args.port, sem, conns, stats, args.timeout, tls)
                           for _ in range(args.n)))
    stats["ready"] = True
    stats["seconds"] = round(time.monotonic() - started, 3)
    print(json.dumps(stats), flush=True)

    # Hold until the driver closes our stdin, or the hold time is up.
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), args.hold)
    except asyncio.TimeoutError:
        pass
    # The kernel closes every socket at exit; os._exit also skips waiting
    # for the executor thread that may still be blocked reading stdin.
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
