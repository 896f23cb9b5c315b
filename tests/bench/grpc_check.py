#!/usr/bin/env python3
"""One unary call of the benchmark's gRPC method through a real gRPC client
(Python's grpcio, in the virtual environment run.sh makes), to check what
h2load cannot see: the call's status from the trailers, the message that
came back, and the metadata. Prints one line of JSON.

Usage: grpc_check.py PORT PAYLOAD_HEX
The request is `bench.Msg { payload }` (`bytes payload = 1`), serialized by
hand as bench.py's configs.grpc_message does, without generated code:
grpcio is handed the protobuf bytes and adds the 5-byte message prefix
itself. The upstream echoes the message, so the answer must be the same
bytes.
"""

import json
import sys

import grpc


def main():
    port, payload = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
    request = b"\x0a" + bytes([len(payload)]) + payload
    out = {"grpcio": grpc.__version__}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/bench.Echo/Unary")  # bytes in, bytes out
        try:
            answer, info = call.with_call(request, timeout=5)
            out.update(code=info.code().name, answer_matches=answer == request,
                       initial_metadata=dict(info.initial_metadata() or ()),
                       trailing_metadata=dict(info.trailing_metadata() or ()))
        except grpc.RpcError as e:
            out.update(code=e.code().name, details=e.details(),
                       trailing_metadata=dict(e.trailing_metadata() or ()))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
