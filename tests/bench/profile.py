#!/usr/bin/env python3
"""Profiles Weir's request path with callgrind (perf is not available on
the development machine):

    python3 tests/bench/profile.py [--seconds 20] [--conns 10] [--plugin ID] [--close]

Starts the benchmark's upstream nginx and the release `weir` under
`valgrind --tool=callgrind`, warms it up, zeroes the counters
(`callgrind_control -z`), runs wrk with keep-alive requests, dumps the
profile of just that run (`callgrind_control -d`), stops Weir, and prints
the top of `callgrind_annotate` by inclusive and by self cost, with the
number of requests so costs can be read per request. With `--plugin`,
Weir runs one of the benchmark's plugin scenarios (configs.plugin_scenarios:
noop, header-rewrite, api-key, ...) as the deterministic runs do, with
`max_instances = 1` and under no_auxv.py. With `--close`, every request
says `Connection: close` (a connection per request, as the benchmark's
close rows). Needs valgrind
(`apt-get install -y valgrind`) and what run.sh installs and builds.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import bench
import configs


LINE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(?:\*\s+)?(.*?)(?: \[[^\]]*\])?$")


def by_function(text, inclusive):
    """callgrind_annotate's "file:function" rows merged by function name.
    With line-tables-only debug info, code inlined from another file shows
    up as its own row under that file: self costs are summed, inclusive
    costs take the largest row (summing would count nested rows twice).
    Rows claiming (nearly) the whole program as self cost are the frames
    that were on the stack when the counters were zeroed, and are dropped."""
    total = 0
    m = re.search(r"^\s*([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text, re.M)
    if m:
        total = int(m.group(1).replace(",", ""))
    body = text.split("file:function", 1)[-1].split("-- Auto-annotated", 1)[0]
    costs = {}
    for line in body.splitlines():
        lm = LINE.match(line)
        if not lm:
            continue
        ir = int(lm.group(1).replace(",", ""))
        fn = lm.group(2).split(":", 1)[-1] if ":" in lm.group(2) else lm.group(2)
        if not inclusive and ir >= 0.99 * total:
            continue
        costs[fn] = max(costs.get(fn, 0), ir) if inclusive else costs.get(fn, 0) + ir
    return total, sorted(costs.items(), key=lambda kv: -kv[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20, help="measured wrk run")
    ap.add_argument("--conns", type=int, default=10, help="wrk connections")
    ap.add_argument("--top", type=int, default=25, help="functions to show")
    ap.add_argument("--close", action="store_true", help="a connection per request")
    ap.add_argument("--plugin", help="a plugin scenario's id (configs.plugin_scenarios)")
    ap.add_argument("--out", default=os.path.join(bench.HERE, "results", "callgrind.out"))
    args = ap.parse_args()

    os.sched_setaffinity(0, {bench.LOAD_CPU})
    workdir = tempfile.mkdtemp(prefix="weir-profile-")
    procs = bench.Procs(os.environ.get("BENCH_PIDFILE"))
    mode = dict(bench.MODES["quick"], conns=args.conns)
    b = bench.Bench(args, mode, workdir, procs)
    try:
        b.start_upstream()
        port = bench.free_port()
        d = b.dir("weir")
        headers = ()
        if args.plugin:
            sc = next((s for s in configs.plugin_scenarios() if s["id"] == args.plugin), None)
            wasm = sc and configs.find_plugin(bench.REPO, sc["files"])
            if wasm is None:
                sys.exit(f"no plugin scenario {args.plugin!r} with a built .wasm")
            plugin_dir = bench.plugin_folder(b, "weir", sc["id"], wasm)
            conf = configs.weir_plugin_config(port, b.upstream.port, plugin_dir, sc["id"],
                                              sc["config"], max_instances=1)
            headers = tuple(sc["headers"])
        else:
            conf = configs.weir_plain(port, b.upstream.port)
        bench.weir_check(d, conf)
        # The same start and dump as the benchmark's observe phase.
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        try:
            srv = bench.callgrind_start(b, "weir", conf, port, args.out, headers,
                                        plugins=bool(args.plugin))
        except bench.BenchError as e:
            sys.exit(str(e))
        proc = srv.proc
        b.wrk(port, 3, headers, close=args.close)  # warm-up: pool filled, code paths touched
        bench.callgrind_control(proc, "-z")
        w = b.wrk(port, args.seconds, headers, close=args.close)
        bench.callgrind_control(proc, "-d")
        procs.stop(proc, grace=60)
        dumps = bench.callgrind_dumps(args.out)
        if not dumps:
            sys.exit(f"no callgrind dump next to {args.out}")
        profile = dumps[0]
        n = w["requests"]
        kind = "Connection: close" if args.close else "keep-alive"
        print(f"profiled {n} {kind} requests through weir{'+' + args.plugin if args.plugin else ''} ({args.conns} connections, "
              f"{w['non2xx']} non-2xx, errors {w['errors']}); profile in {profile}\n")
        n = max(n, 1)
        total = None
        for label, extra in (("inclusive", ["--inclusive=yes"]), ("self", [])):
            r = subprocess.run(["callgrind_annotate", *extra, "--threshold=100", profile],
                               capture_output=True, text=True, timeout=300)
            total, funcs = by_function(r.stdout, inclusive=(label == "inclusive"))
            print(f"== top {args.top} functions by {label} cost "
                  f"(instructions, total {total:,} = {total / n:,.0f} per request)")
            print(f"{'Ir':>14} {'%':>6} {'Ir/req':>8}  function")
            for fn, ir in funcs[:args.top]:
                print(f"{ir:>14,} {100 * ir / total:>5.1f}% {ir / n:>8,.0f}  {fn[:150]}")
            print()
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
