"""A real gRPC server (grpcio) for Weir's end-to-end gRPC tests and for
examples/grpc.

It serves the service `echo.Echo` with generic handlers on raw bytes (no
.proto and no generated code: a message is whatever bytes the client
sent), and the standard health service `grpc.health.v1.Health` from
grpcio-health-checking.

    python server.py --port 0 --name alpha [--health-file PATH]
                     [--tls-cert PEM --tls-key PEM] [--max-message BYTES]

The first line on stdout is the bound port (useful with `--port 0`).
After it, one JSON line per event the tests wait for: `{"event": "sleep",
...}` when a Sleep call starts and `{"event": "sleep_end", "cancelled":
BOOL, "after_ms": N}` when it ends.

Methods of `echo.Echo` (every reply carries the trailing metadata
`x-server: NAME`, so a client can tell which server answered):

- Unary: answers the request's bytes unchanged.
- ServerStream: the request is JSON `{"count": N, "size": S}`; answers N
  messages, message i being S bytes of value i % 256.
- ClientStream: answers JSON `{"count", "bytes", "sha256"}` of the
  messages received (sha256 over them concatenated).
- Bidi: answers each message with itself as soon as it arrives.
- Sleep: the request is JSON `{"ms": N}`; sleeps N ms (stopping early if
  the call is cancelled or its deadline passes) and answers `slept`.
- Fail: fails with INVALID_ARGUMENT, the request's text as the message
  ("bad thing" when empty), and the trailing metadata `x-detail: why`
  and `x-detail-bin: 00 01 fe ff`.
- Metadata: answers JSON `[[key, value], ...]`, the invocation metadata
  received (binary values as `hex:...`).
- Whoami: answers the server's name.

Health: every service ("" for the server as a whole, and "echo.Echo")
starts SERVING. With `--health-file`, the file is read every 20 ms; each
line is `STATUS` (sets both) or `SERVICE=STATUS` (sets one; `=STATUS` is
the server as a whole), STATUS being SERVING or NOT_SERVING. A missing
or empty file changes nothing.
"""

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE = "echo.Echo"
STATUSES = {
    "SERVING": health_pb2.HealthCheckResponse.SERVING,
    "NOT_SERVING": health_pb2.HealthCheckResponse.NOT_SERVING,
}


def emit(event, **fields):
    """One event line on stdout, flushed at once (the tests read them)."""
    print(json.dumps({"event": event, **fields}), flush=True)


class Echo:
    def __init__(self, name):
        self.name = name

    def tag(self, context):
        context.set_trailing_metadata((("x-server", self.name),))

    def unary(self, request, context):
        self.tag(context)
        return request

    def server_stream(self, request, context):
        self.tag(context)
        ask = json.loads(request or b"{}")
        for i in range(ask.get("count", 1)):
            yield bytes([i % 256]) * ask.get("size", 1)

    def client_stream(self, requests, context):
        self.tag(context)
        digest, count, total = hashlib.sha256(), 0, 0
        for message in requests:
            digest.update(message)
            count += 1
            total += len(message)
        return json.dumps(
            {"count": count, "bytes": total, "sha256": digest.hexdigest()}
        ).encode()

    def bidi(self, requests, context):
        self.tag(context)
        for message in requests:
            yield message

    def sleep(self, request, context):
        self.tag(context)
        ms = json.loads(request or b"{}").get("ms", 1000)
        start = time.monotonic()
        emit("sleep", ms=ms)
        end = start + ms / 1000
        while time.monotonic() < end and context.is_active():
            time.sleep(0.005)
        cancelled = not context.is_active()
        emit(
            "sleep_end",
            cancelled=cancelled,
            after_ms=round((time.monotonic() - start) * 1000),
        )
        return b"slept"

    def fail(self, request, context):
        context.set_trailing_metadata(
            (
                ("x-server", self.name),
                ("x-detail", "why"),
                ("x-detail-bin", b"\x00\x01\xfe\xff"),
            )
        )
        message = request.decode() if request else "bad thing"
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)

    def metadata(self, request, context):
        self.tag(context)
        seen = [
            [k, "hex:" + v.hex() if isinstance(v, bytes) else v]
            for k, v in context.invocation_metadata()
        ]
        return json.dumps(seen).encode()

    def whoami(self, request, context):
        self.tag(context)
        return self.name.encode()

    def handler(self):
        # No serializers: requests and replies are the raw message bytes.
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
                "ServerStream": grpc.unary_stream_rpc_method_handler(
                    self.server_stream
                ),
                "ClientStream": grpc.stream_unary_rpc_method_handler(
                    self.client_stream
                ),
                "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
                "Sleep": grpc.unary_unary_rpc_method_handler(self.sleep),
                "Fail": grpc.unary_unary_rpc_method_handler(self.fail),
                "Metadata": grpc.unary_unary_rpc_method_handler(self.metadata),
                "Whoami": grpc.unary_unary_rpc_method_handler(self.whoami),
            },
        )


def apply_health_file(path, servicer, last):
    """Sets the health statuses the file names; returns its text."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return last
    if text == last:
        return last
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if "=" in line:
            service, status = line.split("=", 1)
            services = [service.strip()]
        else:
            status, services = line, ["", SERVICE]
        status = STATUSES.get(status.strip())
        if status is None:
            print(f"health file: unknown status in {line!r}", file=sys.stderr)
            continue
        for service in services:
            servicer.set(service, status)
    return text


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default="server")
    p.add_argument("--health-file")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--max-message", type=int, default=64 * 1024 * 1024)
    args = p.parse_args()

    options = [
        ("grpc.max_send_message_length", args.max_message),
        ("grpc.max_receive_message_length", args.max_message),
        # Two servers on one port would make the tests' results depend on
        # which one the kernel picks.
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=64), options=options
    )
    server.add_generic_rpc_handlers((Echo(args.name).handler(),))
    servicer = health.HealthServicer()
    for service in ("", SERVICE):
        servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)

    address = f"{args.host}:{args.port}"
    if args.tls_cert:
        with open(args.tls_key, "rb") as k, open(args.tls_cert, "rb") as c:
            creds = grpc.ssl_server_credentials(((k.read(), c.read()),))
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        sys.exit(f"cannot listen on {address}")
    server.start()
    print(port, flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    last = None
    while not stop.wait(0.02):
        if args.health_file:
            last = apply_health_file(args.health_file, servicer, last)
        # Stop with the process that started us (a test that panicked
        # and was killed leaves no one to stop this server).
        if os.getppid() != parent:
            break
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
