"""A real gRPC client (grpcio) for Weir's end-to-end gRPC tests and for
examples/grpc: runs one named case against an address and prints one
JSON object on stdout.

    python client.py --target HOST:PORT [--ca CA.pem --authority NAME]
                     [--timeout SECONDS] [--metadata KEY=VALUE ...] CASE [ARGS]

Without --ca the channel is plaintext HTTP/2 (h2c, prior knowledge); with
it, TLS trusting only that CA, checking the certificate against
--authority (grpc's ssl_target_name_override) when given.

Cases (the methods of echo.Echo that tests/e2e/grpc/server.py serves):

    unary [--size N | --text T]    one message; N random bytes or T
    server_stream --count N --size S
    client_stream --count N --size S
    bidi --count N --size S        ping-pong: each message is sent only
                                   after the previous one came back
    sleep --ms N                   the server sleeps N ms
    fail [--text T]                the server fails with INVALID_ARGUMENT
    metadata                       the invocation metadata the server saw
    whoami [--count N]             N calls on one channel, each server's name
    call --method /SVC/METHOD      a unary call to any path, empty request
    health [--service S]           grpc.health.v1.Health/Check

The JSON: `code` (the status code's name: OK, DEADLINE_EXCEEDED, ...),
`details` (the status message), `initial` and `trailing` (metadata as
[key, value] pairs, binary values as "hex:..."), `elapsed_ms`, and per
case: `intact` (every reply was the bytes expected), `sizes` (the
replies' lengths), `text` (a small reply as text), `names` (whoami),
`status` (health).
"""

import argparse
import hashlib
import json
import os
import queue
import sys
import time

import grpc

SERVICE = "/echo.Echo/"
MAX_MESSAGE = 64 * 1024 * 1024


def pairs(metadata):
    return [
        [k, "hex:" + v.hex() if isinstance(v, bytes) else v]
        for k, v in (metadata or ())
    ]


def channel_for(args):
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        # The tests read Weir's answers as they are: no transparent retry
        # by the client, no proxy from the environment.
        ("grpc.enable_retries", 0),
        ("grpc.enable_http_proxy", 0),
    ]
    if args.ca is None:
        return grpc.insecure_channel(args.target, options=options)
    with open(args.ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    if args.authority:
        options.append(("grpc.ssl_target_name_override", args.authority))
        options.append(("grpc.default_authority", args.authority))
    return grpc.secure_channel(args.target, creds, options=options)


def run(args, channel, out):
    """Runs the case; fills `out` with what it saw. Raises grpc.RpcError
    for a call that did not end OK."""
    md = [tuple(m.split("=", 1)) for m in args.metadata]
    kw = {"timeout": args.timeout, "metadata": md}
    case = args.case

    if case == "unary":
        sent = args.text.encode() if args.text is not None else os.urandom(args.size)
        reply, call = channel.unary_unary(SERVICE + "Unary").with_call(sent, **kw)
        out.update(intact=reply == sent, sizes=[len(reply)])
        if args.text is not None:
            out["text"] = reply.decode(errors="replace")
        return call

    if case == "server_stream":
        ask = json.dumps({"count": args.count, "size": args.size}).encode()
        call = channel.unary_stream(SERVICE + "ServerStream")(ask, **kw)
        sizes, intact = [], True
        for i, reply in enumerate(call):
            sizes.append(len(reply))
            intact &= reply == bytes([i % 256]) * args.size
        out.update(intact=intact and len(sizes) == args.count, sizes=sizes)
        return call

    if case == "client_stream":
        sent = [os.urandom(args.size) for _ in range(args.count)]
        reply, call = channel.stream_unary(SERVICE + "ClientStream").with_call(
            iter(sent), **kw
        )
        got = json.loads(reply)
        expected = hashlib.sha256(b"".join(sent)).hexdigest()
        out.update(
            intact=got["sha256"] == expected and got["count"] == args.count,
            sizes=[len(reply)],
            text=reply.decode(),
        )
        return call

    if case == "bidi":
        # The next message goes out only once the previous one came back:
        # a proxy that held the request stream (or the replies) back until
        # the other side ended would leave this waiting until the deadline.
        outbox = queue.Queue()

        def requests():
            while (m := outbox.get()) is not None:
                yield m

        call = channel.stream_stream(SERVICE + "Bidi")(requests(), **kw)
        sizes, intact = [], True
        for i in range(args.count):
            message = os.urandom(args.size)
            outbox.put(message)
            reply = next(call)
            sizes.append(len(reply))
            intact &= reply == message
        outbox.put(None)
        extra = list(call)
        out.update(intact=intact and not extra, sizes=sizes)
        return call

    if case == "sleep":
        ask = json.dumps({"ms": args.ms}).encode()
        reply, call = channel.unary_unary(SERVICE + "Sleep").with_call(ask, **kw)
        out.update(text=reply.decode(errors="replace"), sizes=[len(reply)])
        return call

    if case == "fail":
        ask = args.text.encode() if args.text is not None else b""
        reply, call = channel.unary_unary(SERVICE + "Fail").with_call(ask, **kw)
        out.update(sizes=[len(reply)])
        return call

    if case == "metadata":
        reply, call = channel.unary_unary(SERVICE + "Metadata").with_call(b"", **kw)
        out.update(seen=json.loads(reply), sizes=[len(reply)])
        return call

    if case == "whoami":
        names, call = [], None
        for _ in range(args.count):
            reply, call = channel.unary_unary(SERVICE + "Whoami").with_call(b"", **kw)
            names.append(reply.decode())
        out.update(names=names)
        return call

    if case == "call":
        reply, call = channel.unary_unary(args.method).with_call(b"", **kw)
        out.update(text=reply.decode(errors="replace"), sizes=[len(reply)])
        return call

    if case == "health":
        from grpc_health.v1 import health_pb2

        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        reply, call = check.with_call(
            health_pb2.HealthCheckRequest(service=args.service), **kw
        )
        out.update(status=health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
        return call

    raise SystemExit(f"unknown case {case!r}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True)
    p.add_argument("--ca")
    p.add_argument("--authority")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--metadata", action="append", default=[])
    p.add_argument("case")
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--text")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--ms", type=int, default=1000)
    p.add_argument("--method", default=SERVICE + "Unary")
    p.add_argument("--service", default="")
    args = p.parse_args()

    out = {"case": args.case}
    start = time.monotonic()
    with channel_for(args) as channel:
        try:
            call = run(args, channel, out)
            code, details = call.code(), call.details()
            initial, trailing = call.initial_metadata(), call.trailing_metadata()
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
            initial, trailing = e.initial_metadata(), e.trailing_metadata()
    out.update(
        code=code.name,
        details=details or "",
        initial=pairs(initial),
        trailing=pairs(trailing),
        elapsed_ms=round((time.monotonic() - start) * 1000),
    )
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
