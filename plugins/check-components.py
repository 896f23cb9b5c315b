#!/usr/bin/env python3
"""Checks that every plugin .wasm is a WebAssembly *component* (not a core
module) and prints its size and top-level imports and exports.

Usage: python3 check-components.py [DIR]   (default: target/wasm32-wasip2/release)

A component starts with the magic "\\0asm" followed by version 0x0d 0x00 and
layer 0x01 0x00; a core module has version 1 (01 00 00 00). Exits non-zero
if any file is not a component. Only the outer import (id 10) and export
(id 11) sections are read; nested modules and components are skipped.
"""

import pathlib
import sys

COMPONENT = bytes.fromhex("0061736d0d000100")
CORE = bytes.fromhex("0061736d01000000")


def leb(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def name(data, pos):
    # importname'/exportname' ::= 0x00 len name | 0x01 len name (legacy)
    pos += 1
    length, pos = leb(data, pos)
    return data[pos : pos + length].decode(), pos + length


def externdesc(data, pos):
    kind = data[pos]
    pos += 1
    if kind == 0x00:  # core module: 0x11 typeidx
        pos += 1
        _, pos = leb(data, pos)
    elif kind in (0x01, 0x04, 0x05):  # func, component, instance
        _, pos = leb(data, pos)
    elif kind in (0x02, 0x03):  # value / type bound
        bound = data[pos]
        pos += 1
        if not (kind == 0x03 and bound == 0x01):  # "sub resource" has no index
            _, pos = leb(data, pos)
    return ["core-module", "func", "value", "type", "component", "instance"][kind], pos


def sections(data):
    pos = 8
    while pos < len(data):
        sid = data[pos]
        size, body = leb(data, pos + 1)
        yield sid, data[body : body + size]
        pos = body + size


def describe(data):
    imports, exports = [], []
    for sid, body in sections(data):
        if sid not in (10, 11):
            continue
        count, pos = leb(body, 0)
        for _ in range(count):
            item, pos = name(body, pos)
            if sid == 11:  # export: sortidx then optional externdesc
                sort = body[pos]
                pos += 2 if sort == 0x00 else 1
                _, pos = leb(body, pos)
                has_desc = body[pos]
                pos += 1
                if has_desc:
                    _, pos = externdesc(body, pos)
                exports.append(item)
            else:
                kind, pos = externdesc(body, pos)
                if kind == "instance":
                    imports.append(item)
    return imports, exports


def main():
    folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/wasm32-wasip2/release")
    files = sorted(folder.glob("*.wasm"))
    if not files:
        sys.exit(f"no .wasm files in {folder}")
    failed = False
    for path in files:
        data = path.read_bytes()
        header = data[:8]
        if header == COMPONENT:
            imports, exports = describe(data)
            print(f"{path.name}: component, {len(data)} bytes")
            print(f"  imports: {', '.join(imports)}")
            print(f"  exports: {', '.join(exports)}")
        else:
            failed = True
            what = "core module" if header == CORE else "not wasm"
            print(f"{path.name}: NOT a component ({what}, header {header.hex(' ')})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
