#!/usr/bin/env python3
"""Weir side by side with nginx and HAProxy. Run through tests/bench/run.sh,
which installs the tools and builds Weir first; see tests/bench/README.md.

Layout of one run:
  CPU 1: the proxy under test, alone (one worker thread or process);
  CPU 0: wrk, the upstream nginx and this driver.
Every process is started here, in its own session, its pid written to
$BENCH_PIDFILE (run.sh's trap kills those ids if this script dies), and
stopped at the end. Every wait is bounded.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

import configs

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WEIR = os.path.join(REPO, "target", "release", "weir")
LUA = os.path.join(HERE, "report.lua")
ATTACK_LUA = os.path.join(HERE, "attack.lua")
HOSTILE_WASM = os.path.join(REPO, "target", "fixture-plugins", "wasm32-wasip2", "release",
                            "fixture_hostile.wasm")
IDLE = os.path.join(HERE, "idle_conns.py")
# Every process under callgrind copies and fills memory with vector loops,
# not `rep movsb`/`rep stosb`: valgrind counts each iteration of a `rep`
# instruction as one instruction, so a 14 KB copy would count as 14,000
# (glibc takes `rep movsb` from about 2 KB up on CPUs with ERMS), while
# the vector loop's count is what the CPU executes. Applied to nginx,
# HAProxy and Weir alike.
CALLGRIND_ENV = ["env", "GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=4294967295"
                 ":glibc.cpu.x86_rep_stosb_threshold=4294967295"]
# Runs valgrind with prctl(PR_GET_AUXV) refused: Weir with plugins under
# callgrind or dhat (phases auth, fleet, throughput).
NO_AUXV = os.path.join(HERE, "no_auxv.py")
# Phase h2: the gRPC upstream (tests/bench/grpc_upstream, built by run.sh),
# and the Python with grpcio that run.sh sets up for the real-client check.
GRPC_UPSTREAM = os.path.join(REPO, "target", "bench-upstream", "release", "bench-grpc-upstream")
GRPC_CHECK = os.path.join(HERE, "grpc_check.py")
GRPC_PYTHON = os.path.join(REPO, "target", "bench-venv", "bin", "python")

LOAD_CPU = 0   # wrk, the upstream, this driver
PROXY_CPU = 1  # the proxy under test, alone

MODES = {
    # seconds per measured run, warm-up seconds, rounds, start-up samples
    # per proxy and round, wrk connections
    "quick": dict(duration=3, warmup=1, rounds=1, startup_samples=3, conns=50,
                  idle_conns=10_000, budget=660),
    "full": dict(duration=8, warmup=2, rounds=3, startup_samples=5, conns=50,
                 idle_conns=10_000, budget=2700),
}

# TLS handshake scenarios: `openssl s_time` processes running at once
# (each one makes its connections one after another), and the request
# each connection sends. s_time sends `GET <-www> HTTP/1.0` and a blank
# line, so the path argument carries an HTTP/1.1 request with a Host and
# `Connection: close`; the trailing " HTTP/1.0" lands in a header value.
STIME_CLIENTS = 8
STIME_REQUEST = "/ HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nX-Bench: s_time"

# Phase h2: h2load's clients (connections) and the streams each keeps in
# flight (README.md, scenario 9, says why these).
H2LOAD_CLIENTS = 10
H2LOAD_STREAMS = 20

# Hot deploy: swaps under load, and plugins in the start-up scenario.
HOT_SWAPS = 100
MANY_PLUGINS = 20


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------

class Procs:
    """Every process the benchmark starts, so that all of them are stopped."""

    def __init__(self, pidfile):
        self.live = []
        self.pidfile = pidfile

    def start(self, argv, cpu, log_path, stdin=subprocess.DEVNULL, stdout=None):
        log = open(log_path, "ab")
        # Pin the child as `taskset -c CPU` would, without an extra exec in
        # front of it: the driver moves itself to CPU for the spawn (the
        # child inherits the affinity) and comes back. A preexec_fn would
        # do the same but force a full fork of this Python process, which
        # costs milliseconds of the start-up figure.
        home = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        try:
            p = subprocess.Popen(argv, stdin=stdin, stdout=stdout or log, stderr=log,
                                 start_new_session=True)
        finally:
            os.sched_setaffinity(0, home)
            log.close()
        self.live.append(p)
        self._write_pidfile()
        return p

    def _write_pidfile(self):
        # Only live ids, so the trap never signals a recycled pid.
        if self.pidfile:
            with open(self.pidfile, "w") as f:
                f.write("".join(f"{p.pid}\n" for p in self.live))

    def stop(self, p, grace=5.0):
        """SIGTERM to the process group (nginx master and workers alike),
        SIGKILL after `grace` seconds."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(grace)
        # Children left in the group (an nginx worker whose master died).
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p in self.live:
            self.live.remove(p)
            self._write_pidfile()

    def stop_all(self):
        for p in list(reversed(self.live)):
            self.stop(p, grace=3.0)


_ports = set()


def free_port():
    """A port the kernel says is free now, never handed out twice per run."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports:
            _ports.add(port)
            return port
    raise BenchError("no free port")


def tree(pid):
    """`pid` and all its descendants (nginx master and worker)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ns(pids):
    """Nanoseconds on CPU so far, summed over every thread of `pids`
    (first field of /proc/PID/task/TID/schedstat)."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_user_sys_ns(pids):
    """User-space and kernel CPU time so far, in nanoseconds, summed over
    `pids` (utime and stime of /proc/PID/stat: every thread of the process;
    clock ticks, which the kernel scales to the exact total)."""
    user = sys_ = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        user += int(fields[11])
        sys_ += int(fields[12])
    return user * 1_000_000_000 // CLK_TCK, sys_ * 1_000_000_000 // CLK_TCK


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpus_allowed(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    return "?"


def established():
    """Each established TCP connection of the machine, as (local port,
    remote port, socket inode), from /proc/net/tcp and tcp6."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "01":
                        yield (int(fields[1].split(":")[1], 16),
                               int(fields[2].split(":")[1], 16), fields[9])
        except OSError:
            pass


def established_to(port):
    """Established TCP connections whose local port is `port` (the proxy's
    side of its client connections)."""
    return sum(1 for local, _, _ in established() if local == port)


def tls_client(cafile=None, alpn=("http/1.1",)):
    """A TLS client context: TLS 1.3, ALPN `alpn`; it verifies the server
    against `cafile` (the benchmark's certificate, for name `localhost`)
    when given, otherwise it does not verify."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    return ctx


_TLS_PROBE = None


def http_get(port, headers=(), timeout=1.0, whole=False, path="/", tls=False):
    """One request on a fresh connection (with `tls`, over TLS without
    verification): the status code (None if there was no answer), or with
    `whole` the status, the head and the body."""
    global _TLS_PROBE
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            s = raw
            if tls:
                _TLS_PROBE = _TLS_PROBE or tls_client()
                s = _TLS_PROBE.wrap_socket(raw, server_hostname="localhost")
            extra = "".join(f"{h}\r\n" for h in headers)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}"
                      "Connection: close\r\n\r\n".encode())
            while whole or b"\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            if s is not raw:
                s.close()
    except OSError:
        if not whole or not data:
            return (None, "", b"") if whole else None
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    status = int(m.group(1)) if m else None
    if not whole:
        return status
    head, _, body = data.partition(b"\r\n\r\n")
    return status, head.decode("latin-1").lower(), body


def check_behaviour(server, checks):
    """Requests that show a proxy does the job it is measured doing:
    (headers, path, status, text the body must contain, response header
    that must be present). Raises on the first mismatch."""
    for headers, path, status, text, header in checks:
        got, head, body = http_get(server.port, headers, whole=True, path=path)
        what = f"{server.name}: GET {path} with {headers or 'no extra headers'}"
        if got != status:
            raise BenchError(f"{what} answered {got}, expected {status}")
        if text is not None and text.encode() not in body:
            raise BenchError(f"{what}: body {body[:200]!r} lacks {text!r}")
        if header is not None and f"\r\n{header}:" not in head:
            raise BenchError(f"{what}: no {header} header in the answer")


def wait_200(port, deadline, headers=(), proc=None, pause=0.0002, path="/", tls=False):
    """Polls tightly until a request through `port` answers 200."""
    while time.monotonic() < deadline:
        if http_get(port, headers, path=path, tls=tls) == 200:
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(pause)
    return False


def wait_answer(port, deadline, proc, pause=0.005):
    """Polls until a request through `port` gets an answer, whatever its
    status."""
    while time.monotonic() < deadline:
        if http_get(port) is not None:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(pause)
    return False


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------

class Server:
    def __init__(self, name, port, proc, log, headers=(), tls=False):
        self.name, self.port, self.proc, self.log = name, port, proc, log
        self.headers = list(headers)
        self.tls = tls
        # Where its handshake counts are read (TLS): Weir's admin
        # listener, HAProxy's stats socket; nginx has none.
        self.admin_port = None
        self.stats_socket = None
        # Bytes of its 200 to STIME_REQUEST (tls_check).
        self.stime_bytes = None
        # Phase h2: which proxy (or "direct" for an upstream measured
        # alone), and the gRPC upstream's stats port.
        self.kind = name
        self.direct = False
        self.stats_port = None

    def pids(self):
        return tree(self.proc.pid)

    def handshakes(self):
        """Full, resumed and failed TLS handshakes so far, as the proxy
        counts them, or None when it does not say."""
        if self.admin_port:
            status, _, body = http_get(self.admin_port, whole=True, path="/admin/tls")
            if status != 200:
                return None
            try:
                h = json.loads(body.decode())["bench"]["handshakes"]
                return {"full": h["full"], "resumed": h["resumed"],
                        "failed": sum(h["failed"].values())}
            except (ValueError, KeyError, TypeError, AttributeError):
                return None
        if self.stats_socket:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(2.0)
                    s.connect(self.stats_socket)
                    s.sendall(b"show stat\n")
                    out = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        out += chunk
            except OSError:
                return None
            lines = out.decode().splitlines()
            if not lines:
                return None
            head = lines[0].lstrip("# ").split(",")
            for line in lines[1:]:
                row = dict(zip(head, line.split(",")))
                if row.get("pxname") == "bench" and row.get("svname") == "FRONTEND":
                    try:
                        # `ssl_sess` counts new sessions (full handshakes)
                        # only, `ssl_reused_sess` the resumed ones.
                        return {"full": int(row["ssl_sess"]),
                                "resumed": int(row["ssl_reused_sess"]),
                                "failed": int(row["ssl_failed_handshake"])}
                    except (KeyError, ValueError):
                        return None
        return None


class Bench:
    def __init__(self, args, mode, workdir, procs):
        self.args, self.mode, self.workdir, self.procs = args, mode, workdir, procs
        self.upstream = None
        self._tls = None

    def tls(self):
        """The certificate of every TLS scenario, made once per run: ECDSA
        P-256, self-signed, for DNS:localhost and IP:127.0.0.1."""
        if self._tls is None:
            d = self.dir("tls")
            cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
            r = subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                 "-days", "365", "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise BenchError(f"openssl req failed: {r.stderr[-800:]}")
            # HAProxy reads the certificate and its key from one file.
            combined = os.path.join(d, "combined.pem")
            with open(combined, "w") as f:
                for path in (cert, key):
                    with open(path) as part:
                        f.write(part.read())
            self._tls = configs.Tls(cert, key, combined)
        return self._tls

    def dir(self, name):
        d = os.path.join(self.workdir, name)
        os.makedirs(d, exist_ok=True)
        return d

    def argv_for(self, kind, d, conf_text):
        """Writes the configuration and returns the command line."""
        if kind == "nginx":
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write(conf_text)
            return ["nginx", "-p", d, "-e", os.path.join(d, "error.log"),
                    "-c", conf, "-g", "daemon off;"]
        if kind == "haproxy":
            conf = os.path.join(d, "haproxy.cfg")
            with open(conf, "w") as f:
                f.write(conf_text)
            return ["haproxy", "-f", conf, "-db"]
        if kind == "weir":
            conf = os.path.join(d, "weir.toml")
            with open(conf, "w") as f:
                f.write(conf_text)
            return [WEIR, "run", "-c", conf]
        if kind == "redis":
            conf = os.path.join(d, "redis.conf")
            with open(conf, "w") as f:
                f.write(conf_text)
            return ["redis-server", conf]
        if kind == "grpc-upstream":
            # No configuration file: the ports are its arguments.
            return [GRPC_UPSTREAM] + conf_text.split()
        raise ValueError(kind)

    def start(self, name, kind, conf_text, port, cpu=PROXY_CPU, headers=(), ready_s=10.0,
              tls=False, ready=None):
        """Starts a server and waits until it answers 200: to an HTTP/1.1
        GET, or as `ready(deadline, proc)` says (the h2c-only servers)."""
        d = self.dir(name)
        argv = self.argv_for(kind, d, conf_text)
        log = os.path.join(d, "stderr.log")
        proc = self.procs.start(argv, cpu, log)
        deadline = time.monotonic() + ready_s
        if not (ready(deadline, proc) if ready else
                wait_200(port, deadline, headers, proc, pause=0.005, tls=tls)):
            self.procs.stop(proc)
            raise BenchError(f"{name} did not answer 200 on port {port} within "
                             f"{ready_s}s; its log:\n{tail(log)}"
                             f"{tail(os.path.join(d, 'error.log'))}")
        pinned = cpus_allowed(proc.pid)
        if pinned != str(cpu):
            self.procs.stop(proc)
            raise BenchError(f"{name} runs on CPUs {pinned}, not {cpu}")
        return Server(name, port, proc, log, headers, tls)

    def start_upstream(self):
        port = free_port()
        d = self.dir("upstream")
        self.upstream = self.start("upstream", "nginx", configs.upstream_nginx(d, port),
                                   port, cpu=LOAD_CPU)
        return self.upstream

    def proxy_conf(self, kind, port, **kw):
        """A proxy's configuration; with `tls=True`, HTTPS to clients with
        the run's certificate (and Weir's admin listener on `admin_port`)."""
        up = self.upstream.port
        tls = self.tls() if kw.get("tls") else None
        if kind == "weir":
            return configs.weir_plain(port, up, tls, kw.get("admin_port"))
        if kind == "nginx":
            return configs.proxy_nginx(self.dir(kw["name"]), port, up,
                                       api_key_lua=kw.get("lua", False), tls=tls)
        if kind == "haproxy":
            return configs.haproxy(self.dir(kw["name"]), port, up, tls)
        raise ValueError(kind)

    def start_proxy(self, name, kind, lua=False, headers=(), tls=False):
        port = free_port()
        admin_port = free_port() if tls and kind == "weir" else None
        conf = self.proxy_conf(kind, port, name=name, lua=lua, tls=tls, admin_port=admin_port)
        if kind == "weir":
            weir_check(self.dir(name), conf)
        server = self.start(name, kind, conf, port, headers=headers, tls=tls)
        server.admin_port = admin_port
        if tls and kind == "haproxy":
            server.stats_socket = os.path.join(self.dir(name), "haproxy.sock")
        return server

    # ---- wrk ------------------------------------------------------------

    def wrk(self, port, seconds, headers=(), close=False, tls=False):
        argv = ["wrk", "-t1", f"-c{self.mode['conns']}", f"-d{seconds}s",
                "--timeout", "5s", "--latency", "-s", LUA]
        for h in headers:
            argv += ["-H", h]
        if close:
            argv += ["-H", "Connection: close"]
        argv.append(f"{'https' if tls else 'http'}://127.0.0.1:{port}/")
        try:
            # The driver runs on LOAD_CPU; wrk inherits it.
            r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            raise BenchError(f"wrk did not finish within {seconds + 30}s")
        m = re.search(r"^BENCH_JSON (.*)$", r.stdout, re.M)
        if r.returncode != 0 or not m:
            raise BenchError(f"wrk failed (exit {r.returncode}): {r.stdout[-800:]} {r.stderr[-800:]}")
        out = json.loads(m.group(1))
        out["latency_distribution"] = parse_latency_distribution(r.stdout)
        return out

    def measure(self, server, close=False, warmup=None, auth=None, redis=None):
        """Warm-up (`warmup` seconds, the mode's by default), then one
        measured wrk run with CPU deltas of the proxy (all its processes
        and threads; also split into user space and kernel) and of the
        upstream; with `auth` (an AuthService, phase auth), also the
        requests that service answered in the measured run and its CPU;
        with `redis` (a RedisService, phase fleet), the same of Redis: the
        commands it processed and its CPU."""
        m = self.mode
        warm = self.wrk(server.port, warmup or m["warmup"], server.headers, close, server.tls)
        proxy_pids = server.pids() if server is not self.upstream else []
        up_pids = self.upstream.pids()
        auth_pids = auth.server.pids() if auth else []
        redis_pids = redis.server.pids() if redis else []
        h0 = server.handshakes() if server.tls else None
        a0 = auth.answered() if auth else None
        r0 = redis.answered() if redis else None
        c0, u0, x0 = cpu_ns(proxy_pids), cpu_ns(up_pids), cpu_ns(auth_pids)
        d0 = cpu_ns(redis_pids)
        us0 = cpu_user_sys_ns(proxy_pids)
        w = self.wrk(server.port, m["duration"], server.headers, close, server.tls)
        c1, u1, x1 = cpu_ns(proxy_pids), cpu_ns(up_pids), cpu_ns(auth_pids)
        d1 = cpu_ns(redis_pids)
        us1 = cpu_user_sys_ns(proxy_pids)
        a1 = auth.answered() if auth else None
        r1 = redis.answered() if redis else None
        h1 = server.handshakes() if server.tls else None
        n = w["requests"]
        errors = sum(w["errors"].values())
        run = {
            "requests": n,
            "rps": n / (w["duration_us"] / 1e6) if w["duration_us"] else 0.0,
            "p50_us": w["latency_us"]["p50"],
            "p99_us": w["latency_us"]["p99"],
            "proxy_cpu_ns": c1 - c0 if proxy_pids else None,
            "proxy_cpu_us_per_req": (c1 - c0) / 1000 / n if proxy_pids and n else None,
            "proxy_user_cpu_us_per_req": (us1[0] - us0[0]) / 1000 / n if proxy_pids and n else None,
            "proxy_sys_cpu_us_per_req": (us1[1] - us0[1]) / 1000 / n if proxy_pids and n else None,
            "upstream_cpu_ns": u1 - u0,
            "upstream_cpu_us_per_req": (u1 - u0) / 1000 / n if n else None,
            "proxy_pids": proxy_pids,
            "wrk": w,
            "warmup": {"requests": warm["requests"], "non2xx": warm["non2xx"],
                       "errors": warm["errors"]},
        }
        if h0 and h1:
            run["handshakes"] = {k: h1[k] - h0[k] for k in h0}
        if auth:
            run.update(auth_calls=a1 - a0, auth_calls_per_req=(a1 - a0) / n if n else None,
                       auth_cpu_us_per_req=(x1 - x0) / 1000 / n if n else None)
        if redis:
            run.update(redis_cmds=r1 - r0, redis_cmds_per_req=(r1 - r0) / n if n else None,
                       redis_cpu_ns=d1 - d0,
                       redis_cpu_us_per_req=(d1 - d0) / 1000 / n if n else None)
        problems = []
        if n == 0:
            problems.append("no requests completed")
        if w["non2xx"]:
            problems.append(f"{w['non2xx']} non-2xx responses (first: {w['first_non2xx_status']})")
        if errors:
            problems.append(f"socket errors {w['errors']}")
        if warm["non2xx"] or sum(warm["errors"].values()):
            problems.append(f"warm-up had {warm['non2xx']} non-2xx and errors {warm['errors']}")
        if server.proc.poll() is not None:
            problems.append(f"{server.name} exited during the run")
        run["status"] = "failed: " + "; ".join(problems) if problems else "ok"
        return run

    # ---- openssl s_time ---------------------------------------------------

    def stime(self, port, seconds, reuse):
        """`STIME_CLIENTS` `openssl s_time` processes at once, each making
        connections one after another for `seconds` (s_time's clock counts
        whole seconds: up to one more): with `-new` every connection is a
        full handshake, with `-reuse` each resumes the session of the
        process's first connection (made before its timed loop). Each
        connection sends STIME_REQUEST and reads the answer until the
        proxy closes. Returns the connections made, their kinds as s_time
        saw them (one character each: `r` resumed, `*` a full TLS 1.3
        handshake) and the bytes read per connection of each process."""
        argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}",
                "-reuse" if reuse else "-new", "-www", STIME_REQUEST, "-time", str(seconds)]
        procs = []
        try:
            # The driver runs on LOAD_CPU; s_time inherits it.
            for _ in range(STIME_CLIENTS):
                procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True,
                                              start_new_session=True))
            deadline = time.monotonic() + seconds + 30
            outs = []
            for p in procs:
                try:
                    out, _ = p.communicate(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    raise BenchError(f"openssl s_time did not finish within {seconds + 30}s")
                outs.append((p.returncode, out))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        out = {"connections": 0, "resumed": 0, "full": 0, "bytes_per_conn": [], "errors": []}
        for rc, text in outs:
            m = re.search(r"^(\d+) connections in [\d.]+s; [\d.]+ connections/user sec, "
                          r"bytes read (\d+)$", text, re.M)
            if rc != 0 or not m:
                out["errors"].append(f"exit {rc}: {text[-300:]!r}")
                continue
            n = int(m.group(1))
            # The process's first connection, made before its timed loop,
            # is not in its count (nor in the progress characters).
            out["connections"] += n + (1 if reuse else 0)
            progress = "".join(re.findall(r"^[r*t3]+$", text, re.M))
            out["resumed"] += progress.count("r")
            out["full"] += progress.count("*")
            out["bytes_per_conn"].append(int(m.group(2)) / n if n else 0)
        return out

    def measure_handshakes(self, server, reuse):
        """Warm-up, then one measured s_time run with the CPU deltas of
        the proxy and the upstream: CPU per connection, each connection a
        full (`reuse` False) or resumed TLS handshake and one request.
        s_time runs one second less than the mode's times ask, since it
        may run up to one second more."""
        m = self.mode
        warm = self.stime(server.port, max(m["warmup"] - 1, 1), reuse)
        proxy_pids, up_pids = server.pids(), self.upstream.pids()
        h0 = server.handshakes()
        c0, u0 = cpu_ns(proxy_pids), cpu_ns(up_pids)
        t0 = time.monotonic()
        st = self.stime(server.port, max(m["duration"] - 1, 1), reuse)
        seconds = time.monotonic() - t0
        c1, u1 = cpu_ns(proxy_pids), cpu_ns(up_pids)
        h1 = server.handshakes()
        n = st["connections"]
        run = {
            "requests": n,
            "rps": n / seconds if seconds else 0.0,
            "p50_us": None,
            "p99_us": None,
            "proxy_cpu_ns": c1 - c0,
            "proxy_cpu_us_per_req": (c1 - c0) / 1000 / n if n else None,
            "handshakes_per_cpu_s": n / ((c1 - c0) / 1e9) if n and c1 > c0 else None,
            "upstream_cpu_ns": u1 - u0,
            "upstream_cpu_us_per_req": (u1 - u0) / 1000 / n if n else None,
            "proxy_pids": proxy_pids,
            "s_time": dict(st, clients=STIME_CLIENTS, seconds=round(seconds, 3),
                           mode="-reuse" if reuse else "-new"),
            "warmup": {"connections": warm["connections"], "errors": warm["errors"]},
        }
        if h0 and h1:
            run["handshakes"] = {k: h1[k] - h0[k] for k in h0}
        problems = []
        if n == 0:
            problems.append("no connections completed")
        if st["errors"] or warm["errors"]:
            problems.append(f"s_time failed: {(st['errors'] + warm['errors'])[0]}")
        # Every connection of the kind measured, as the client saw it...
        wrong = st["full"] if reuse else st["resumed"]
        if wrong:
            problems.append(f"{wrong} connections were {'full' if reuse else 'resumed'} "
                            "handshakes (s_time)")
        # ...and as the proxy counted them, where it counts them (the
        # processes' first connections in -reuse are full handshakes).
        hs = run.get("handshakes")
        if hs:
            expect_full = STIME_CLIENTS if reuse else n
            if hs["failed"] or hs["full"] != expect_full or hs["full"] + hs["resumed"] != n:
                problems.append(f"the proxy counted {hs}, expected {expect_full} full of {n}")
        # Every answer the size of the proxy's 200 (s_time cannot see the
        # status): HAProxy's request ids vary by a few bytes.
        want = server.stime_bytes
        if want:
            off = [b for b in st["bytes_per_conn"] if abs(b - want) > 0.05 * want]
            if off:
                problems.append(f"answers of {off[0]:.0f} bytes on average, the 200 has {want}")
        if server.proc.poll() is not None:
            problems.append(f"{server.name} exited during the run")
        run["status"] = "failed: " + "; ".join(problems) if problems else "ok"
        return run

    # ---- h2load (phase h2) ----------------------------------------------

    def h2load(self, port, seconds, grpc, log_file=None, midway=None):
        """One h2load run of `seconds` over h2c prior knowledge: GET / or
        (`grpc`) the unary gRPC call, H2LOAD_CLIENTS connections with
        H2LOAD_STREAMS streams in flight on each. With `log_file`, h2load
        writes a line per request there (its latency, for p50 and p99).
        `midway()`, if given, is called half-way through the run; what it
        returns is the run's "midway"."""
        argv = ["h2load", "-t1", f"-c{H2LOAD_CLIENTS}", f"-m{H2LOAD_STREAMS}", "-D", str(seconds)]
        if log_file:
            argv += ["--log-file", log_file]
        path = "/"
        if grpc:
            argv += ["-d", self.grpc_body(), "-H", "content-type: application/grpc",
                     "-H", "te: trailers"]
            path = configs.GRPC_PATH
        argv.append(f"http://127.0.0.1:{port}{path}")
        # The driver runs on LOAD_CPU; h2load inherits it.
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        seen = None
        try:
            if midway:
                time.sleep(seconds / 2)
                seen = midway()
            stdout, stderr = p.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            raise BenchError(f"h2load did not finish within {seconds + 30}s")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        out = parse_h2load(stdout)
        if p.returncode != 0 or out is None:
            raise BenchError(f"h2load failed (exit {p.returncode}): {stdout[-800:]} "
                             f"{stderr[-800:]}")
        if log_file:
            out["latency_us"] = h2load_latencies(log_file)
        out["midway"] = seen
        return out

    def grpc_body(self):
        """The file h2load posts: one gRPC message (configs.grpc_message)."""
        path = os.path.join(self.workdir, "grpc-request.bin")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(configs.grpc_message())
        return path

    def measure_h2load(self, server, upstream, grpc):
        """As `measure`, with h2load: a warm-up run, then the measured run
        with the CPU deltas of the proxy and the upstream. For gRPC also
        the calls the upstream answered in the measured run, which must be
        at least the 2xx h2load counted (a proxy's own gRPC errors are
        HTTP 200 as well, with a grpc-status in the trailers that h2load
        does not read); and the upstream connections the proxy holds
        half-way through the run."""
        m = self.mode
        warm = self.h2load(server.port, m["warmup"], grpc)
        proxy_pids = server.pids() if server is not upstream else []
        up_pids = upstream.pids()
        log_file = os.path.join(self.workdir, "h2load-requests.log")
        a0 = grpc_answered(upstream.stats_port) if grpc else None
        midway = (lambda: conns_to(proxy_pids, upstream.port)) if proxy_pids else None
        c0, u0 = cpu_ns(proxy_pids), cpu_ns(up_pids)
        h = self.h2load(server.port, m["duration"], grpc, log_file, midway)
        c1, u1 = cpu_ns(proxy_pids), cpu_ns(up_pids)
        a1 = grpc_answered(upstream.stats_port) if grpc else None
        conns = h.pop("midway")
        try:
            os.unlink(log_file)
        except OSError:
            pass
        n = h["succeeded"]
        lat = h.get("latency_us") or {}
        run = {
            "requests": n,
            "rps": n / h["seconds"] if h["seconds"] else 0.0,
            "p50_us": lat.get("p50"),
            "p99_us": lat.get("p99"),
            "proxy_cpu_ns": c1 - c0 if proxy_pids else None,
            "proxy_cpu_us_per_req": (c1 - c0) / 1000 / n if proxy_pids and n else None,
            # Share of one core the proxy used: near 100 % when it is the
            # bottleneck.
            "proxy_busy": (c1 - c0) / 1e9 / h["seconds"] if proxy_pids and h["seconds"] else None,
            "upstream_cpu_ns": u1 - u0,
            "upstream_cpu_us_per_req": (u1 - u0) / 1000 / n if n else None,
            "upstream_conns": conns,
            "proxy_pids": proxy_pids,
            "h2load": h,
            "warmup": {k: warm[k] for k in ("succeeded", "failed", "errored", "timeout",
                                            "status")},
        }
        problems = []
        if n == 0:
            problems.append("no requests completed")
        for what, res in (("", h), ("warm-up: ", warm)):
            bad = {k: res["status"][k] for k in ("3xx", "4xx", "5xx") if res["status"][k]}
            if bad:
                problems.append(f"{what}non-2xx responses {bad}")
            if res["failed"] or res["errored"] or res["timeout"]:
                problems.append(f"{what}{res['failed']} failed, {res['errored']} errored, "
                                f"{res['timeout']} timed out")
            if res["protocol"] != "h2c":
                problems.append(f"{what}h2load spoke {res['protocol']!r}, not h2c")
        if grpc:
            if a0 is None or a1 is None:
                problems.append("the gRPC upstream's count could not be read")
            else:
                run["upstream_answered"] = a1 - a0
                if a1 - a0 < h["status"]["2xx"]:
                    problems.append(f"{h['status']['2xx'] - (a1 - a0)} of the "
                                    f"{h['status']['2xx']} 2xx answers were not the upstream's "
                                    f"(it answered {a1 - a0} calls)")
        if server.proc.poll() is not None:
            problems.append(f"{server.name} exited during the run")
        run["status"] = "failed: " + "; ".join(problems) if problems else "ok"
        return run


def parse_latency_distribution(text):
    """The `--latency` table of wrk, in microseconds: {"50": 123.0, ...}."""
    scale = {"us": 1.0, "ms": 1000.0, "s": 1e6, "m": 60e6}
    out = {}
    for pct, val, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        out[pct] = float(val) * scale[unit]
    return out


def weir_check(d, conf_text):
    """`weir check -c FILE`; raises with its output when it refuses."""
    path = os.path.join(d, "weir.toml")
    with open(path, "w") as f:
        f.write(conf_text)
    r = subprocess.run([WEIR, "check", "-c", path], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise BenchError(f"weir check refused {path}:\n{r.stdout}{r.stderr}")


def refusal_line(e):
    """The first line of `weir check`'s refusal (a BenchError of
    weir_check), without its `error: FILE:LINE: ` prefix."""
    first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
    return re.sub(r"^error: \S+weir\.toml:\d+: ", "", first)


def plugin_folder(bench, name, plugin_id, wasm):
    """A folder of server `name`'s own holding just `wasm`, under the
    plugin's own name (cargo's file name has `_` for `-`)."""
    plugin_dir = os.path.join(bench.dir(name), "plugins")
    os.makedirs(plugin_dir, exist_ok=True)
    shutil.copyfile(wasm, os.path.join(plugin_dir, f"{plugin_id}.wasm"))
    return plugin_dir


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------

def plugin_targets(bench):
    """Weir plugin scenarios that can run, and the reasons for the others."""
    ready, skipped = [], []
    for sc in configs.plugin_scenarios():
        name = f"weir+{sc['id']}"
        wasm = configs.find_plugin(REPO, sc["files"])
        if wasm is None:
            skipped.append({"group": "plugin", "target": name,
                            "reason": "skipped: plugin runtime not available (no "
                                      f"{configs.PLUGIN_DIR}/{sc['files'][0]}.wasm)"})
            continue
        port = free_port()
        plugin_dir = plugin_folder(bench, name, sc["id"], wasm)
        conf = configs.weir_plugin_config(port, bench.upstream.port, plugin_dir, sc["id"],
                                          sc["config"])
        try:
            weir_check(bench.dir(name), conf)
        except BenchError as e:
            skipped.append({"group": "plugin", "target": name,
                            "reason": "skipped: plugin runtime not available "
                                      f"(weir check refused the plugin config: {refusal_line(e)})"})
            continue
        # The same Weir for the deterministic runs (plugin_deterministic),
        # on a port of theirs, `max_instances = 1` (valgrind refuses the
        # pooling allocator's reservation for the default).
        def det_conf(det_port, sc=sc, plugin_dir=plugin_dir):
            return configs.weir_plugin_config(det_port, bench.upstream.port, plugin_dir,
                                              sc["id"], sc["config"], max_instances=1)
        ready.append((name, conf, port, sc["headers"], sc["checks"], det_conf))
    return ready, skipped


def throughput_phase(bench, results, log):
    m = bench.mode
    up = bench.upstream
    servers = {"direct": up}
    servers["weir"] = bench.start_proxy("weir", "weir")
    servers["nginx"] = bench.start_proxy("nginx", "nginx")
    servers["haproxy"] = bench.start_proxy("haproxy", "haproxy")
    key_header = [f"{configs.API_KEY_HEADER}: {configs.BENCH_KEY}"]
    servers["nginx+lua-api-key"] = bench.start_proxy("nginx+lua-api-key", "nginx", lua=True,
                                                     headers=key_header)
    # Every proxy really forwards to the upstream...
    for name, srv in servers.items():
        status, _, body = http_get(srv.port, srv.headers, whole=True)
        if status != 200 or body != configs.UPSTREAM_BODY.encode():
            raise BenchError(f"{name} answered {status} {body[:80]!r}, not the upstream's body")
    # ...and the Lua check does what Weir's api-key plugin does.
    check_behaviour(servers["nginx+lua-api-key"], [
        ([], "/", 401, None, None),
        (key_header, configs.ECHO_PATH, 200,
         f"x-consumer={configs.API_KEYS[configs.BENCH_KEY]} x-api-key=\n", None)])

    ready, skipped = plugin_targets(bench)
    results["skipped"].extend(skipped)
    for name, conf, port, headers, checks, _ in ready:
        try:
            servers[name] = bench.start(name, "weir", conf, port, headers=headers)
        except BenchError as e:
            results["skipped"].append({"group": "plugin", "target": name,
                                       "reason": f"skipped: plugin runtime not available ({e})"})
            continue
        try:
            check_behaviour(servers[name], checks)
        except BenchError as e:
            # The runtime is there but the plugin does not do its job:
            # that is a failure to show, not a skip.
            results["skipped"].append({"group": "plugin", "target": name,
                                       "reason": f"FAILED set-up check, not measured: {e}"})
            bench.procs.stop(servers.pop(name).proc)

    # Balancer cost: the same two endpoints under round_robin and
    # least_request (issue 3: least_request may cost at most 5 % more).
    balancers = []
    for policy in ("round_robin", "least_request"):
        name = f"weir-2ep-{policy}"
        port = free_port()
        conf = configs.weir_two_endpoints(port, up.port, policy)
        weir_check(bench.dir(name), conf)
        servers[name] = bench.start(name, "weir", conf, port)
        balancers.append(name)

    # Each plugin scenario is compared with Weir plain of the same round,
    # and the Lua check with nginx: each runs right after the one it is
    # compared with, so a change in the machine's load between them
    # weighs as little as it can.
    plan = [("plain", t, False) for t in ("direct", "weir")]
    plan += [("plugin", name, False) for name, *_ in ready if name in servers]
    plan += [("plain", "nginx", False), ("plugin", "nginx+lua-api-key", False)]
    plan += [("plain", "haproxy", False)]
    plan += [("balancer", t, False) for t in balancers]
    plan += [("close", t, True) for t in ("direct", "weir", "nginx", "haproxy")]

    for rnd in range(1, m["rounds"] + 1):
        for group, target, close in plan:
            t0 = time.monotonic()
            try:
                run = bench.measure(servers[target], close=close)
            except BenchError as e:
                run = {"status": f"failed: {e}"}
            run.update(round=rnd, group=group, target=target)
            results["runs"].append(run)
            log(f"  round {rnd} {group:<6} {target:<22} {fmt_run(run)}  ({time.monotonic() - t0:.1f}s)")

    for name, s in servers.items():
        if s is not up:
            bench.procs.stop(s.proc)

    plain_deterministic(bench, results, log)
    close_deterministic(bench, results, log)
    plugin_deterministic(bench, results, log,
                         [(name, det_conf, headers) for name, _, _, headers, _, det_conf in ready
                          if not any(r["target"] == name for r in results["skipped"])],
                         key_header)


# --------------------------------------------------------------------------
# Plain keep-alive proxying, deterministic figures (issue 23): system calls
# (strace -c) and heap allocations (valgrind's dhat) per request, over the
# callgrind runs' fixed request counts (CALLGRIND_REQUESTS, wrk -c
# CALLGRIND_CONNS, report.lua's limit).
# --------------------------------------------------------------------------

DETERMINISTIC_PLAIN = ("weir", "nginx", "haproxy")
# dhat cannot be zeroed mid-run: each proxy runs twice under it, with the
# same warm-up and the same number of wrk runs (so the same start-up,
# connections and shutdown), the second one's measured run this fraction
# of the first's; allocations per request are the difference in blocks
# over the difference in requests.
DHAT_SHORT = 0.1
DHAT_TOTAL_RE = re.compile(r"==\d+== Total:\s+([\d,]+) bytes in ([\d,]+) blocks")


def traced_all(pids):
    """True once every thread of every pid has a tracer (strace attached)."""
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    m = re.search(r"^TracerPid:\s+(\d+)", f.read(), re.M)
            except OSError:
                continue
            if not m or m.group(1) == "0":
                return False
    return True


def strace_summary(path):
    """{syscall: calls} of an `strace -c -U calls,name` summary."""
    calls = {}
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit() and parts[1] != "total":
                calls[parts[1]] = calls.get(parts[1], 0) + int(parts[0])
    return calls


def strace_measure(bench, srv, requests, warmup, d):
    """The counted warm-up, then `strace -f -c` attached to every process of
    the proxy (all threads) for `requests` responses, detached with SIGINT.
    System calls (all of the proxy's) divided by the responses wrk counted;
    the top 3 by count."""
    warm = wrk_count(srv.port, warmup, CALLGRIND_CONNS, srv.headers)
    problems = wrk_problems(warm, "warm-up")
    pids = srv.pids()
    out_file = os.path.join(d, "strace.txt")
    argv = ["strace", "-f", "-c", "-U", "calls,name", "-S", "calls", "-o", out_file]
    for pid in pids:
        argv += ["-p", str(pid)]
    with open(os.path.join(d, "strace.log"), "ab") as err:
        st = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not traced_all(pids):
            if st.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"strace did not attach to {pids} (exit {st.poll()}): "
                                 f"{tail(os.path.join(d, 'strace.log'))}")
            time.sleep(0.01)
        w = wrk_count(srv.port, requests, CALLGRIND_CONNS, srv.headers)
        st.send_signal(signal.SIGINT)
        st.wait(30)
    finally:
        if st.poll() is None:
            st.kill()
            st.wait()
    calls = strace_summary(out_file)
    problems += wrk_problems(w, "measured run")
    n = w["requests"]
    total = sum(calls.values())
    if n == 0:
        problems.append("no requests completed")
    if not calls:
        problems.append(f"strace wrote no summary to {out_file}")
    top = sorted(calls.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    return {"requests": n, "warmup_requests": warm["requests"], "conns": CALLGRIND_CONNS,
            "processes": len(pids), "syscalls_total": total,
            "syscalls_per_req": total / n if n else None,
            "top": [{"syscall": k, "calls": v, "per_req": v / n if n else None} for k, v in top],
            "status": "failed: " + "; ".join(problems) if problems else "ok"}


def dhat_blocks(bench, name, kind, conf, port, requests, warmup, headers=(), plugins=False):
    """One proxy under `valgrind --tool=dhat` (its forked processes too):
    the counted warm-up, `requests` responses (each with `headers`), then
    SIGTERM. Blocks allocated (summed over its processes' `Total:` lines),
    the responses wrk counted in all, the number of processes, problems.
    With `plugins` (Weir with a plugin), valgrind runs under no_auxv.py
    (callgrind_start says why)."""
    d = bench.dir(name)
    argv = ["valgrind", "--tool=dhat", f"--dhat-out-file={os.path.join(d, 'dhat.out.%p')}"] + \
        bench.argv_for(kind, d, conf)
    if plugins:
        argv = [sys.executable, NO_AUXV] + argv
    log = os.path.join(d, "stderr.log")
    open(log, "w").close()
    proc = bench.procs.start(argv, PROXY_CPU, log)
    try:
        if not wait_200(port, time.monotonic() + 60, headers=headers, proc=proc, pause=0.05):
            raise BenchError(f"{name}: {kind} under dhat "
                             f"{'exited' if proc.poll() is not None else 'did not answer'}:"
                             f"\n{tail(log)}")
        warm = wrk_count(port, warmup, CALLGRIND_CONNS, headers)
        w = wrk_count(port, requests, CALLGRIND_CONNS, headers)
        problems = wrk_problems(warm, "warm-up") + wrk_problems(w, "measured run")
    finally:
        # dhat writes its totals as the processes exit.
        bench.procs.stop(proc, grace=60.0)
    with open(log, errors="replace") as f:
        totals = [int(m.group(2).replace(",", "")) for m in DHAT_TOTAL_RE.finditer(f.read())]
    if not totals:
        raise BenchError(f"{name}: dhat printed no `Total:` line:\n{tail(log)}")
    # wait_200's requests: a few in both runs, left in the difference.
    return sum(totals), warm["requests"] + w["requests"], len(totals), problems


def dhat_measure(bench, target, conf_fn, requests, warmup, kind=None, headers=(), plugins=False,
                 prefix="plain"):
    """Allocations per request: two runs under dhat (DHAT_SHORT says why)."""
    runs = []
    for label, n in (("long", requests), ("short", max(1, int(requests * DHAT_SHORT)))):
        port = free_port()
        name = f"{prefix}-dhat-{slug(target)}-{label}"
        runs.append(dhat_blocks(bench, name, kind or target, conf_fn(port, name), port, n,
                                warmup, headers, plugins))
    (b_long, r_long, procs_long, p_long), (b_short, r_short, _, p_short) = runs
    problems = p_long + p_short
    dr = r_long - r_short
    if dr <= 0:
        problems.append(f"the long run counted {r_long} requests, the short one {r_short}")
    return {"requests": r_long, "requests_short_run": r_short, "blocks": b_long,
            "blocks_short_run": b_short, "processes": procs_long, "conns": CALLGRIND_CONNS,
            "allocs_per_req": (b_long - b_short) / dr if dr > 0 else None,
            "status": "failed: " + "; ".join(problems) if problems else "ok"}


def slug(target):
    return re.sub(r"[^a-z0-9]+", "-", target.lower()).strip("-")


def det_row(bench, rec, kind, conf_fn, requests, warmup, headers=(), plugins=False,
            prefix="plain"):
    """System calls (strace, attached to a fresh proxy after its warm-up)
    and heap allocations (dhat, two more fresh ones) per request of one
    row, into `rec`; `conf_fn(port, name)` is the proxy's configuration,
    `headers` those of every request, `plugins` Weir with a plugin."""
    target = rec["target"]
    if shutil.which("strace") is None:
        rec["syscalls"] = {"status": "not measured: strace not found (run.sh installs it)"}
    else:
        srv = None
        name = f"{prefix}-strace-{slug(target)}"
        try:
            port = free_port()
            srv = bench.start(name, kind, conf_fn(port, name), port, headers=headers)
            rec["syscalls"] = strace_measure(bench, srv, requests, warmup, bench.dir(name))
        except (BenchError, subprocess.TimeoutExpired) as e:
            rec["syscalls"] = {"status": f"failed: {e}"}
        finally:
            if srv is not None:
                bench.procs.stop(srv.proc)
    if shutil.which("valgrind") is None:
        rec["allocs"] = {"status": "not measured: valgrind not found (run.sh installs it)"}
    else:
        try:
            rec["allocs"] = dhat_measure(bench, target, conf_fn, requests, warmup, kind,
                                         headers, plugins, prefix)
        except (BenchError, subprocess.TimeoutExpired) as e:
            rec["allocs"] = {"status": f"dhat unusable: {e}"}


def det_log(log, rec, t0, width=8):
    sc, al = rec["syscalls"], rec["allocs"]
    cg = rec.get("instructions")
    log(f"  deterministic {rec['target']:<{width}} "
        + (("" if cg is None else
            (f"{cg['ir_per_req']:,.0f} instructions/req; " if cg["status"] == "ok"
             else f"callgrind {cg['status'][:200]}; ")))
        + (f"{sc['syscalls_per_req']:.2f} syscalls/req ("
           + ", ".join(f"{t['syscall']} {t['per_req']:.2f}" for t in sc["top"]) + ")"
           if sc["status"] == "ok" else f"syscalls {sc['status'][:200]}")
        + "; " + (f"{al['allocs_per_req']:.2f} allocs/req" if al["status"] == "ok"
                  else f"allocs {al['status'][:200]}")
        + f"  ({time.monotonic() - t0:.1f}s)")


def fresh_conf(bench, target):
    """The configuration function of a deterministic row's fresh proxy
    (`conf_fn(port, name)`): the proxy's plain configuration, Weir's
    checked by `weir check` first."""
    def conf_fn(port, name):
        conf = bench.proxy_conf(target, port, name=name)
        if target == "weir":
            weir_check(bench.dir(name), conf)
        return conf
    return conf_fn


def plain_deterministic(bench, results, log):
    """Instructions (callgrind), system calls and heap allocations per
    request of plain keep-alive proxying, for Weir (no plugin), nginx
    (under callgrind with `master_process off`, as the Lua row) and
    HAProxy, each in fresh proxies."""
    warmup, requests = CALLGRIND_REQUESTS[bench.mode["name"]]
    out = results["plain_deterministic"]
    for target in DETERMINISTIC_PLAIN:
        rec = {"target": target}
        out.append(rec)
        t0 = time.monotonic()
        conf_fn = fresh_conf(bench, target)
        rec["instructions"] = det_callgrind(bench, target, target, conf_fn, requests, warmup,
                                            prefix="plain")
        det_row(bench, rec, target, conf_fn, requests, warmup)
        det_log(log, rec, t0)


def close_deterministic(bench, results, log):
    """Instructions (callgrind) per request of Connection: close proxying,
    a client connection per request (its accept, set-up and close with
    the request), for Weir and nginx, each in a fresh proxy under
    callgrind. Only the instructions: the system calls of a connection
    are the kernel's, counted in the CPU rows."""
    warmup, requests = CALLGRIND_REQUESTS[bench.mode["name"]]
    out = results.setdefault("close_deterministic", [])
    for target in ("weir", "nginx"):
        rec = {"target": target}
        out.append(rec)
        t0 = time.monotonic()
        conf_fn = fresh_conf(bench, target)
        cg = det_callgrind(bench, target, target, conf_fn, requests, warmup,
                           headers=("Connection: close",), prefix="close")
        rec["instructions"] = cg
        log(f"  deterministic close {target:<6} "
            + (f"{cg['ir_per_req']:,.0f} instructions/req" if cg["status"] == "ok"
               else f"callgrind {cg['status'][:200]}")
            + f"  ({time.monotonic() - t0:.1f}s)")


def nginx_callgrind_start(bench, name, conf, port, out_file, headers=(), kind="nginx"):
    """nginx (or with `kind`, HAProxy) under `valgrind --tool=callgrind`
    (writing its dumps to `out_file`.N), pinned to the proxy CPU, once it
    answers 200 to a request with `headers`. nginx with `master_process
    off`: one process that serves the requests itself, since
    callgrind_control cannot reach a forked worker under valgrind (vgdb
    serves the first process only). HAProxy runs as it is (`-db`,
    `nbthread 1`: one process, one thread)."""
    if kind == "nginx":
        if "master_process on;" not in conf:
            raise BenchError(f"{name}: no `master_process on;` in the nginx configuration")
        conf = conf.replace("master_process on;", "master_process off;")
    d = bench.dir(name)
    for old in glob.glob(out_file + "*"):
        os.remove(old)
    argv = CALLGRIND_ENV + ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"] + \
        bench.argv_for(kind, d, conf)
    log = os.path.join(d, "stderr.log")
    proc = bench.procs.start(argv, PROXY_CPU, log)
    if not wait_200(port, time.monotonic() + 60, headers=headers, proc=proc, pause=0.05):
        how = (f"exited ({proc.returncode})" if proc.poll() is not None
               else "did not answer within 60 s")
        bench.procs.stop(proc)
        raise BenchError(f"{name}: {kind} under valgrind {how}:\n{tail(log)}"
                         + (tail(os.path.join(d, 'error.log')) if kind == "nginx" else ""))
    return Server(name, port, proc, log, headers)


def det_callgrind(bench, target, kind, conf_fn, requests, warmup, headers=(), plugins=False,
                  prefix="plugin"):
    """User-space instructions per request of one row (plain or plugin),
    in a fresh proxy under callgrind: Weir (all threads; with `plugins`,
    under no_auxv.py and its plugin with `max_instances = 1`), nginx (one
    process, nginx_callgrind_start says why) or HAProxy."""
    if any(shutil.which(t) is None for t in ("valgrind", "callgrind_control")):
        return {"status": "not measured: valgrind not found (run.sh installs it)"}
    srv = None
    name = f"{prefix}-callgrind-{slug(target)}"
    try:
        port = free_port()
        conf = conf_fn(port, name)
        out_file = os.path.join(bench.dir(name), "callgrind.out")
        if kind == "weir":
            srv = callgrind_start(bench, name, conf, port, out_file, headers, plugins=plugins)
        else:
            srv = nginx_callgrind_start(bench, name, conf, port, out_file, headers, kind=kind)
        return callgrind_measure(bench, srv, out_file, requests, warmup, headers)
    except (BenchError, subprocess.TimeoutExpired) as e:
        return {"status": f"failed: {e}"}
    finally:
        if srv is not None:
            bench.procs.stop(srv.proc, grace=10.0)


def plugin_deterministic(bench, results, log, weir_rows, key_header):
    """Instructions (callgrind), system calls and heap allocations per
    request of the plugin rows: each Weir plugin scenario that passed its
    set-up check (`weir_rows`: name, conf_fn(port), headers) and nginx+Lua,
    each in fresh proxies."""
    warmup, requests = CALLGRIND_REQUESTS[bench.mode["name"]]
    out = results["plugin_deterministic"]
    rows = []
    for name, det_conf, headers in weir_rows:
        def conf_fn(port, dname, det_conf=det_conf):
            conf = det_conf(port)
            weir_check(bench.dir(dname), conf)
            return conf
        rows.append((name, "weir", conf_fn, headers, True))
    rows.append(("nginx+lua-api-key", "nginx",
                 lambda port, dname: bench.proxy_conf("nginx", port, name=dname, lua=True),
                 key_header, False))
    for target, kind, conf_fn, headers, plugins in rows:
        rec = {"target": target}
        out.append(rec)
        t0 = time.monotonic()
        rec["instructions"] = det_callgrind(bench, target, kind, conf_fn, requests, warmup,
                                            headers, plugins)
        det_row(bench, rec, kind, conf_fn, requests, warmup, headers, plugins, "plugin")
        det_log(log, rec, t0, width=22)


def fmt_run(run):
    if run["status"] != "ok":
        return run["status"][:200]
    cpu = run["proxy_cpu_us_per_req"]
    if run["p50_us"] is None:
        # openssl s_time: connections, no latencies.
        return f"{run['rps']:>9.0f} conn/s  cpu {cpu:.2f} us/conn"
    return (f"{run['rps']:>9.0f} req/s  p50 {run['p50_us'] / 1000:.2f} ms  "
            f"p99 {run['p99_us'] / 1000:.2f} ms  "
            f"cpu {'-' if cpu is None else f'{cpu:.2f} us/req'}")


def idle_phase(bench, results, log, tls=False):
    """10,000 idle client connections per proxy (with `tls`, each one a TLS
    connection that completed its handshake and one request): RSS growth."""
    m = bench.mode
    out = results["tls_idle"] if tls else results["idle"]
    what = "idle-tls" if tls else "idle"
    for rnd in range(1, m["rounds"] + 1):
        for kind in ("weir", "nginx", "haproxy"):
            name = f"{what}-{kind}-{rnd}"
            rec = {"round": rnd, "target": kind, "connections": m["idle_conns"]}
            server = None
            client = None
            try:
                server = bench.start_proxy(name, kind, tls=tls)
                # Warm the process once, as a serving proxy would be.
                bench.wrk(server.port, 1, tls=tls)
                time.sleep(0.5)
                pids = server.pids()
                rec["rss_before_kib"] = rss_kib(pids)
                h0 = server.handshakes() if tls else None
                client = bench.procs.start(
                    [sys.executable, IDLE, "--port", str(server.port), "-n", str(m["idle_conns"]),
                     "--hold", "120"] + (["--tls"] if tls else []),
                    LOAD_CPU, os.path.join(bench.dir(name), "idle-client.log"),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                # TLS: the client's side of 10,000 handshakes is Python's.
                line = read_line(client, 150 if tls else 90)
                stats = json.loads(line)
                time.sleep(1.0)
                rec["rss_after_kib"] = rss_kib(pids)
                rec["established"] = established_to(server.port)
                rec["client"] = stats
                rec["growth_kib"] = rec["rss_after_kib"] - rec["rss_before_kib"]
                rec["bytes_per_conn"] = rec["growth_kib"] * 1024 / max(stats["ok"], 1)
                h1 = server.handshakes() if tls else None
                if h0 and h1:
                    rec["handshakes"] = {k: h1[k] - h0[k] for k in h0}
                bad = []
                if stats["failed"] or stats["non200"]:
                    bad.append(f"{stats['failed']} connections failed, {stats['non200']} non-200 "
                               f"({stats.get('first_error', '')})")
                if rec["established"] < stats["ok"]:
                    bad.append(f"only {rec['established']} of {stats['ok']} connections still open")
                rec["status"] = "failed: " + "; ".join(bad) if bad else "ok"
            except (BenchError, ValueError, KeyError) as e:
                rec["status"] = f"failed: {e}"
            finally:
                if client is not None:
                    try:
                        client.stdin.close()
                    except OSError:
                        pass
                    bench.procs.stop(client)
                if server is not None:
                    bench.procs.stop(server.proc)
            out.append(rec)
            if rec["status"] == "ok":
                log(f"  round {rnd} {what:<6} {kind:<8} RSS {rec['rss_before_kib']} -> "
                    f"{rec['rss_after_kib']} KiB (+{rec['growth_kib']} KiB, "
                    f"{rec['bytes_per_conn']:.0f} B/conn), {rec['established']} open")
            else:
                log(f"  round {rnd} {what:<6} {kind:<8} {rec['status']}")


def tls_check(bench, server):
    """What a TLS proxy negotiates and that it does its job over TLS,
    before it is measured: `openssl s_client` (the library wrk and s_time
    use) verifies the run's certificate for `localhost` and reports the
    version, cipher suite, signature and key exchange it got; Python's ssl
    checks that ALPN h2 is offered back, that a request answers the
    upstream's body, and that the session of that connection resumes on
    the next one. Also records the size of the proxy's answer to
    STIME_REQUEST, against which s_time's bytes per connection are
    checked. Raises on the first problem; returns what it saw."""
    tls = bench.tls()
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}",
                        "-servername", "localhost", "-brief", "-CAfile", tls.cert,
                        "-verify_return_error", "-verify_hostname", "localhost"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    seen = dict(re.findall(r"^(Protocol version|Ciphersuite|Signature type|Verification|"
                           r"Server Temp Key): (.*)$", r.stdout + r.stderr, re.M))
    rec = {"target": server.name, "protocol": seen.get("Protocol version"),
           "cipher": seen.get("Ciphersuite"), "signature": seen.get("Signature type"),
           "key_exchange": seen.get("Server Temp Key"), "verified": seen.get("Verification")}
    if r.returncode != 0 or rec["verified"] != "OK" or rec["protocol"] != "TLSv1.3":
        raise BenchError(f"{server.name}: openssl s_client saw {rec}: {(r.stdout + r.stderr)[-400:]}")

    def get(ctx, request, session=None):
        """One connection: the answer to `request` (read until the proxy
        closes; no request: only the handshake), the ALPN protocol, the
        session and whether it was resumed."""
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                data = b""
                if request is None:
                    return data, s.selected_alpn_protocol(), None, s.session_reused
                s.sendall(request)
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                return data, s.selected_alpn_protocol(), s.session, s.session_reused

    try:
        _, alpn, _, _ = get(tls_client(tls.cert, ("h2", "http/1.1")), None)
        ctx = tls_client(tls.cert)
        plain = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        data, _, session, _ = get(ctx, plain)
        _, _, _, resumed = get(ctx, plain, session)
        stime, _, _, _ = get(ctx, f"GET {STIME_REQUEST} HTTP/1.0\r\n\r\n".encode())
    except (OSError, ValueError) as e:
        raise BenchError(f"{server.name}: TLS check failed: {e!r}")
    rec.update(alpn_h2=alpn, resumed=resumed, stime_answer_bytes=len(stime))
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or body != configs.UPSTREAM_BODY.encode():
        raise BenchError(f"{server.name} answered {data[:120]!r} over TLS")
    if not stime.startswith(b"HTTP/1.1 200"):
        raise BenchError(f"{server.name} answered s_time's request with {stime[:120]!r}")
    if alpn != "h2":
        raise BenchError(f"{server.name}: ALPN h2 offered, {alpn!r} chosen")
    if not resumed:
        raise BenchError(f"{server.name}: the TLS session did not resume")
    server.stime_bytes = len(stime)
    return rec


def tls_phase(bench, results, log):
    """HTTPS to the clients (the upstream stays plain HTTP), every proxy
    with the same certificate: keep-alive proxying (wrk), a full handshake
    per connection and request (openssl s_time -new), a resumed one
    (s_time -reuse); then 10,000 idle TLS connections per proxy."""
    m = bench.mode
    servers = {}
    try:
        for kind in ("weir", "nginx", "haproxy"):
            servers[kind] = bench.start_proxy(f"tls-{kind}", kind, tls=True)
        for kind, srv in servers.items():
            rec = dict(tls_check(bench, srv), target=kind)
            results["tls_checks"].append(rec)
            log(f"  {kind:<8} {rec['protocol']} {rec['cipher']} {rec['signature']} "
                f"{rec['key_exchange']}, ALPN {rec['alpn_h2']}, resumption "
                f"{'works' if rec['resumed'] else 'FAILS'}")
        # Each row runs right after the one it is compared with: Weir's
        # full handshakes with nginx's and with its own resumed ones.
        plan = [("tls", t) for t in ("weir", "nginx", "haproxy")]
        plan += [("tls-new", "nginx"), ("tls-new", "weir"), ("tls-resumed", "weir"),
                 ("tls-resumed", "nginx"), ("tls-new", "haproxy"), ("tls-resumed", "haproxy")]
        for rnd in range(1, m["rounds"] + 1):
            for group, target in plan:
                t0 = time.monotonic()
                try:
                    if group == "tls":
                        run = bench.measure(servers[target])
                    else:
                        run = bench.measure_handshakes(servers[target], group == "tls-resumed")
                except BenchError as e:
                    run = {"status": f"failed: {e}"}
                run.update(round=rnd, group=group, target=target)
                results["runs"].append(run)
                hs = run.get("handshakes")
                counted = (f"  (proxy counted {hs['full']} full, {hs['resumed']} resumed)"
                           if hs else "")
                log(f"  round {rnd} {group:<11} {target:<8} {fmt_run(run)}{counted}  "
                    f"({time.monotonic() - t0:.1f}s)")
    except BenchError as e:
        results["skipped"].append({"group": "tls", "target": "all", "reason": f"FAILED: {e}"})
        log(f"  {e}")
    finally:
        for s in servers.values():
            bench.procs.stop(s.proc)
    idle_phase(bench, results, log, tls=True)


# --------------------------------------------------------------------------
# HTTP/2 and gRPC to the upstream (phase h2)
# --------------------------------------------------------------------------

def parse_h2load(text):
    """h2load's summary: requests by outcome, status classes, the run's
    length and its own req/s and latency line; None if it is not there."""
    fin = re.search(r"^finished in ([\d.]+)(s|ms), ([\d.]+) req/s", text, re.M)
    req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    st = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if not (fin and req and st):
        return None
    proto = re.search(r"^Application protocol: (\S+)", text, re.M)
    traffic = re.search(r"^traffic: .*\((\d+)\) total, .*\((\d+)\) headers .*\((\d+)\) data",
                        text, re.M)
    timing = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    out = {
        "seconds": float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1),
        "h2load_rps": float(fin.group(3)),
        "protocol": proto.group(1) if proto else None,
        "status": dict(zip(("2xx", "3xx", "4xx", "5xx"), map(int, st.groups()))),
    }
    out.update(zip(("total", "started", "done", "succeeded", "failed", "errored", "timeout"),
                   map(int, req.groups())))
    if traffic:
        out["bytes"] = dict(zip(("total", "headers", "data"), map(int, traffic.groups())))
    if timing:
        out["time_for_request"] = dict(zip(("min", "max", "mean", "sd"), timing.groups()))
    return out


def h2load_latencies(path):
    """Percentiles (µs) of the requests h2load logged with `--log-file`
    (start, status, µs to the end of the response), nearest rank; failed
    streams (status -1) are left out."""
    times = []
    try:
        with open(path) as f:
            for line in f:
                fields = line.split("\t")
                if len(fields) >= 3 and fields[1] != "-1":
                    times.append(int(fields[2]))
    except (OSError, ValueError):
        return None
    if not times:
        return None
    times.sort()

    def pct(p):
        rank = -(-len(times) * p // 100)  # ceil
        return float(times[min(len(times) - 1, max(0, int(rank) - 1))])

    return {"p50": pct(50), "p90": pct(90), "p99": pct(99), "p999": pct(99.9),
            "max": float(times[-1]), "mean": sum(times) / len(times), "logged": len(times)}


def grpc_answered(port):
    """The unary calls the gRPC upstream answered so far (its stats port),
    None if it does not say."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(64)
                if not chunk:
                    break
                data += chunk
        return int(data)
    except (OSError, ValueError):
        return None


def conns_to(pids, port):
    """Established TCP connections of the processes `pids` (their socket
    descriptors) whose remote port is `port`: a proxy's connections to the
    upstream."""
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    return sum(1 for _, remote, inode in established() if remote == port and inode in inodes)


def h2_request(port, grpc=False, path=None, headers=(), timeout=2.0):
    """One request over h2c prior knowledge with curl (nghttp2): GET `path`
    (default /) or, with `grpc`, the benchmark's unary call. Returns
    (status, HTTP version, response headers, body, trailers), the headers
    and trailers as {lowercase name: value}; status None if no answer."""
    with tempfile.TemporaryDirectory(prefix="h2req-") as d:
        head_file, body_file = os.path.join(d, "head"), os.path.join(d, "body")
        argv = ["curl", "-s", "--http2-prior-knowledge", "--max-time", str(timeout),
                "-D", head_file, "-o", body_file, "-w", "%{http_code} %{http_version}"]
        for h in headers:
            argv += ["-H", h]
        if grpc:
            with open(os.path.join(d, "req"), "wb") as f:
                f.write(configs.grpc_message())
            argv += ["--data-binary", "@" + os.path.join(d, "req"),
                     "-H", "content-type: application/grpc", "-H", "te: trailers"]
            path = path or configs.GRPC_PATH
        argv.append(f"http://127.0.0.1:{port}{path or '/'}")
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5)
        except subprocess.TimeoutExpired:
            return None, None, {}, b"", {}
        code, _, version = r.stdout.partition(" ")
        if r.returncode != 0 or not code.isdigit() or code == "000":
            return None, None, {}, b"", {}
        try:
            with open(head_file, "rb") as f:
                raw = f.read().decode("latin-1")
            with open(body_file, "rb") as f:
                body = f.read()
        except OSError:
            raw, body = "", b""
    # curl writes the status line and the head, a blank line, then the
    # trailers (if any).
    head, _, trail = raw.replace("\r\n", "\n").partition("\n\n")

    def fields(lines):
        out = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                out[name.strip().lower()] = value.strip()
        return out

    return int(code), version, fields(head.splitlines()[1:]), body, fields(trail.splitlines())


def wait_h2(port, grpc, deadline, proc):
    """Polls (curl, h2c) until GET / or the gRPC call answers 200."""
    while time.monotonic() < deadline:
        if h2_request(port, grpc, timeout=1.0)[0] == 200:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def h2_check(server, grpc):
    """What a proxy (or the upstream, `server.direct`) does with one request
    of the scenario, before it is measured: curl over h2c must get HTTP/2
    200 with the upstream's answer (gRPC: the echoed message and the
    trailer grpc-status 0), the proxy's X-Request-Id and Via on the answer,
    and (asked with `x-bench-echo`) the upstream must have seen
    X-Forwarded-For, -Proto, -Host, Via, X-Request-Id and, for gRPC,
    `te: trailers`. For gRPC one call through grpcio (a real gRPC client)
    must end OK with the same message. Raises on the first problem;
    returns what it saw."""
    name = server.name
    status, version, head, body, trailers = h2_request(server.port, grpc)
    if status != 200 or version != "2":
        raise BenchError(f"{name}: answered {status} over HTTP/{version}, not 200 over HTTP/2")
    want = configs.grpc_message() if grpc else configs.UPSTREAM_BODY.encode()
    if body != want:
        raise BenchError(f"{name}: answered {body[:80]!r}, not the upstream's {want!r}")
    rec = {"target": server.kind, "response_headers": head, "trailers": trailers}
    if grpc and trailers.get("grpc-status") != "0":
        raise BenchError(f"{name}: trailers {trailers}, no grpc-status 0")
    if not server.direct:
        missing = [h for h in ("x-request-id", "via") if h not in head]
        if missing:
            raise BenchError(f"{name}: no {', '.join(missing)} on the answer ({head})")
    # What reached the upstream: its echo path (h2) or echo header (gRPC).
    if grpc:
        status, _, head, body, _ = h2_request(server.port, True, headers=["x-bench-echo: 1"])
        seen = head.get("x-bench-seen", "")
    else:
        status, _, _, body, _ = h2_request(server.port, path=configs.ECHO_PATH)
        seen = body.decode("latin-1").strip()
    if status != 200 or not seen:
        raise BenchError(f"{name}: the upstream's echo answered {status} {seen!r}")
    rec["upstream_saw"] = seen
    got = dict(re.findall(r"([a-z-]+)=(\S*)", seen))
    need = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "via", "x-request-id"]
    if server.direct:
        need = []
    if grpc:
        need.append("te")
    missing = [h for h in need if not got.get(h)]
    if missing:
        raise BenchError(f"{name}: the upstream did not get {', '.join(missing)} ({seen!r})")
    if grpc and got.get("te") != "trailers":
        raise BenchError(f"{name}: the upstream got te: {got.get('te')!r}, not trailers")
    if grpc:
        rec["grpcio"] = grpcio_check(server.port)
        g = rec["grpcio"]
        if g.get("code") not in (None, "OK") or g.get("answer_matches") is False:
            raise BenchError(f"{name}: grpcio's call ended {g}")
    return rec


def grpcio_check(port):
    """One call through grpcio (grpc_check.py in run.sh's virtual
    environment); {"skipped": why} when that environment is missing."""
    if not os.access(GRPC_PYTHON, os.X_OK):
        return {"skipped": f"no {GRPC_PYTHON} (run.sh makes it)"}
    try:
        r = subprocess.run([GRPC_PYTHON, GRPC_CHECK, str(port), configs.GRPC_PAYLOAD.hex()],
                           capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise BenchError("grpc_check.py did not finish within 30 s")
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"grpc_check.py failed (exit {r.returncode}): {r.stderr[-400:]}")


def h2_phase(bench, results, log):
    """Scenarios 9 and 10: h2c clients (h2load, many streams per
    connection) through each proxy to an HTTP/2 upstream: GET to nginx
    (`h2`), and unary gRPC calls to the tonic upstream (`grpc`). Each
    round, per scenario: direct (h2load to the upstream), HAProxy, Weir,
    nginx, so Weir runs between the two it is compared with."""
    m = bench.mode
    started = []
    servers = {}
    try:
        upstreams = {}
        port = free_port()
        d = bench.dir("upstream-h2")
        upstreams["h2"] = bench.start(
            "upstream-h2", "nginx", configs.upstream_nginx_h2(d, port), port, cpu=LOAD_CPU,
            ready=lambda dl, p, port=port: wait_h2(port, False, dl, p))
        started.append(upstreams["h2"])
        if os.access(GRPC_UPSTREAM, os.X_OK):
            port, stats = free_port(), free_port()
            upstreams["grpc"] = bench.start(
                "upstream-grpc", "grpc-upstream", f"{port} {stats}", port, cpu=LOAD_CPU,
                ready=lambda dl, p, port=port: wait_h2(port, True, dl, p))
            upstreams["grpc"].stats_port = stats
            started.append(upstreams["grpc"])
        else:
            results["skipped"].append({"group": "grpc", "target": "all",
                                       "reason": f"not measured: {GRPC_UPSTREAM} not built "
                                                 "(run.sh builds it)"})
        for group, up in upstreams.items():
            grpc = group == "grpc"
            up.kind, up.direct = "direct", True
            servers[(group, "direct")] = up
            for kind in ("haproxy", "weir", "nginx"):
                name = f"{group}-{kind}"
                port = free_port()
                d = bench.dir(name)
                if kind == "weir":
                    conf = configs.weir_h2(port, up.port)
                    try:
                        weir_check(d, conf)
                    except BenchError as e:
                        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()),
                                     str(e))
                        # Without the file's temporary path.
                        first = re.sub(r"^error: \S+weir\.toml:\d+: ", "", first)
                        results["skipped"].append({
                            "group": group, "target": kind,
                            "reason": "not measured: weir check refused the configuration "
                                      f"(protocol = \"h2c\" is issue 19's): {first}"})
                        log(f"  {group} {kind}: weir check refused the configuration: {first}")
                        continue
                elif kind == "nginx":
                    conf = configs.proxy_nginx_h2(d, port, up.port)
                else:
                    conf = configs.haproxy_h2(d, port, up.port)
                try:
                    srv = bench.start(name, kind, conf, port,
                                      ready=lambda dl, p, port=port, g=grpc: wait_h2(port, g, dl, p))
                except BenchError as e:
                    results["skipped"].append({"group": group, "target": kind,
                                               "reason": f"FAILED to start: {e}"})
                    log(f"  {group} {kind}: FAILED to start: {e}")
                    continue
                srv.kind, srv.direct = kind, False
                started.append(srv)
                servers[(group, kind)] = srv
            for (g, kind), srv in list(servers.items()):
                if g != group:
                    continue
                try:
                    rec = dict(h2_check(srv, grpc), group=group)
                except BenchError as e:
                    results["skipped"].append({"group": group, "target": kind,
                                               "reason": f"FAILED set-up check, not measured: {e}"})
                    log(f"  {group} {kind}: FAILED set-up check: {e}")
                    del servers[(g, kind)]
                    continue
                results["h2_checks"].append(rec)
                g_rpc = rec.get("grpcio")
                log(f"  {group:<4} {kind:<8} set-up check ok; upstream saw: {rec['upstream_saw']}"
                    + (f"; grpcio call: {g_rpc.get('code') or g_rpc.get('skipped')}"
                       if g_rpc else ""))
        for rnd in range(1, m["rounds"] + 1):
            for group in upstreams:
                for kind in ("direct", "haproxy", "weir", "nginx"):
                    srv = servers.get((group, kind))
                    if srv is None:
                        continue
                    t0 = time.monotonic()
                    try:
                        run = bench.measure_h2load(srv, upstreams[group], group == "grpc")
                    except BenchError as e:
                        run = {"status": f"failed: {e}"}
                    run.update(round=rnd, group=group, target=kind)
                    results["runs"].append(run)
                    extra = ""
                    if run["status"] == "ok" and run.get("proxy_busy") is not None:
                        extra = (f"  busy {run['proxy_busy'] * 100:.0f}%, "
                                 f"{run['upstream_conns']} upstream conns")
                    log(f"  round {rnd} {group:<4} {kind:<8} {fmt_run(run)}{extra}  "
                        f"({time.monotonic() - t0:.1f}s)")
                    if run["status"] != "ok" and kind == "weir":
                        run["weir_log_tail"] = tail(srv.log, 40)
                        log(f"    weir's log:\n{tail(srv.log, 20)}")
    except BenchError as e:
        results["skipped"].append({"group": "h2", "target": "all", "reason": f"FAILED: {e}"})
        log(f"  {e}")
    finally:
        for s in started:
            bench.procs.stop(s.proc)


def read_line(proc, timeout):
    """One line from a child's stdout, bounded in time."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            raise BenchError(f"no answer within {timeout}s")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            raise BenchError("child exited without answering")
        buf += chunk
    return buf.split(b"\n", 1)[0].decode()


def startup_phase(bench, results, log):
    """Time from spawning the proxy to the first 200 through it."""
    m = bench.mode
    for rnd in range(1, m["rounds"] + 1):
        for sample in range(1, m["startup_samples"] + 1):
            for kind in ("weir", "nginx", "haproxy"):
                name = f"start-{kind}-{rnd}-{sample}"
                port = free_port()
                conf = bench.proxy_conf(kind, port, name=name)
                if kind == "weir":
                    weir_check(bench.dir(name), conf)
                d = bench.dir(name)
                argv = bench.argv_for(kind, d, conf)
                t0 = time.monotonic()
                proc = bench.procs.start(argv, PROXY_CPU, os.path.join(d, "stderr.log"))
                ok = wait_200(port, t0 + 10.0, proc=proc)
                ms = (time.monotonic() - t0) * 1000
                # CPU the proxy spent to get there: less noisy than wall
                # time on a shared machine.
                cpu_ms = cpu_ns(tree(proc.pid)) / 1e6
                bench.procs.stop(proc)
                rec = {"round": rnd, "sample": sample, "target": kind,
                       "ms": ms if ok else None, "cpu_ms": cpu_ms if ok else None,
                       "status": "ok" if ok else "failed: no 200 within 10 s"}
                results["startup"].append(rec)
            # What spawning alone costs: the same spawn of `sleep`, whose
            # CPU time once it sleeps is fork + exec + a tiny program.
            proc = bench.procs.start(["sleep", "30"], PROXY_CPU, os.devnull)
            time.sleep(0.05)
            results["startup"].append({"round": rnd, "sample": sample, "target": "spawn-baseline",
                                       "ms": None, "cpu_ms": cpu_ns([proc.pid]) / 1e6,
                                       "status": "ok"})
            bench.procs.stop(proc)
        done = [r for r in results["startup"] if r["round"] == rnd]
        log(f"  round {rnd} start-up " + "  ".join(
            f"{k} {statistics.median([r['ms'] for r in done if r['target'] == k and r['ms']]):.1f} ms"
            for k in ("weir", "nginx", "haproxy")
            if any(r["ms"] for r in done if r["target"] == k)))


def probe_passes(port, check):
    """Whether one check (as in configs.plugin_scenarios) passes now."""
    headers, path, status, text, header = check
    got, head, body = http_get(port, headers, whole=True, path=path)
    if got != status:
        return False
    if text is not None and text.encode() not in body:
        return False
    if header is not None and f"\r\n{header}:" not in head:
        return False
    return True


def bundled_wasm(plugin_id):
    return configs.find_plugin(REPO, [configs.BUNDLED[plugin_id]])


class Swapper:
    """Deploys files into one Weir's plugin folder the way release tools
    do (copy beside, then rename over `p.wasm`) and times the rename to the
    first response that the new file served."""

    def __init__(self, server, plugin_dir, probe, serving_when, admin_port):
        self.server, self.dir = server, plugin_dir
        self.probe, self.serving_when = probe, serving_when
        self.admin_port = admin_port

    def tier(self):
        """Which compiler's code serves plugin `p` (from /admin/plugins)."""
        status, _, body = http_get(self.admin_port, whole=True, path="/admin/plugins")
        if status != 200:
            return None
        try:
            plugins = json.loads(body.decode())["plugins"]
        except (ValueError, KeyError):
            return None
        return next((p.get("tier") for p in plugins if p.get("name") == "p"), None)

    def wait_optimized(self, t0, limit_s=60.0):
        """Waits until the optimized build serves; ms since `t0`."""
        while time.monotonic() - t0 < limit_s:
            if self.tier() == "optimized":
                return (time.monotonic() - t0) * 1000
            time.sleep(0.002)
        raise BenchError(f"{self.server.name}: no optimized build within {limit_s}s; its log:\n"
                         f"{tail(self.server.log)}")

    def serving_new(self):
        return probe_passes(self.server.port, self.probe) == self.serving_when

    def swap(self, wasm, want_new, limit_s=10.0):
        """Renames `wasm` in; returns (ms to the first response by it, the
        monotonic time of the rename)."""
        tmp = os.path.join(self.dir, ".p.wasm.tmp")
        shutil.copyfile(wasm, tmp)
        t0 = time.monotonic()
        os.rename(tmp, os.path.join(self.dir, "p.wasm"))
        while time.monotonic() - t0 < limit_s:
            if self.serving_new() == want_new:
                return (time.monotonic() - t0) * 1000, t0
            if self.server.proc.poll() is not None:
                raise BenchError(f"{self.server.name} exited during a swap; its log:\n"
                                 f"{tail(self.server.log)}")
            # A short pause: probes share the proxy's CPU with the compile.
            time.sleep(0.0005)
        raise BenchError(f"{self.server.name}: the new file did not serve within {limit_s}s; "
                         f"its log:\n{tail(self.server.log)}")


def start_hot(bench, name, base_id, plugin_config):
    """A Weir with `base_id`'s file as plugin `p` and a fresh cache."""
    d = bench.dir(name)
    plugin_dir = os.path.join(d, "plugins")
    cache_dir = os.path.join(d, "cache")
    os.makedirs(plugin_dir, exist_ok=True)
    shutil.copyfile(bundled_wasm(base_id), os.path.join(plugin_dir, "p.wasm"))
    port, admin_port = free_port(), free_port()
    conf = configs.weir_hot_deploy_config(port, bench.upstream.port, plugin_dir, cache_dir,
                                          plugin_config, admin_port)
    weir_check(d, conf)
    return bench.start(name, "weir", conf, port), plugin_dir, admin_port


def wrk_background(port, conns, headers=()):
    argv = ["wrk", "-t1", f"-c{conns}", "-d600s", "--timeout", "5s", "-s", LUA]
    for h in headers:
        argv += ["-H", h]
    argv.append(f"http://127.0.0.1:{port}/")
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wrk_stop(p):
    """Stops a background wrk with SIGINT (it then prints its summary)."""
    p.send_signal(signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        raise BenchError("wrk did not stop within 30 s of SIGINT")
    m = re.search(r"^BENCH_JSON (.*)$", out, re.M)
    if not m:
        raise BenchError(f"wrk printed no summary: {out[-800:]}")
    return json.loads(m.group(1))


def hot_deploy_phase(bench, results, log):
    """Issue 5's figures: rename -> first response by the new file for each
    bundled plugin (uncached: a fresh cache; cached: the same file again),
    failed requests during 100 swaps under load, and start-up to the first
    response with 20 cached plugins."""
    m = bench.mode
    hot = results["hot_deploy"]
    scenarios = [sc for sc in configs.hot_deploy_scenarios()
                 if bundled_wasm(sc["id"]) and bundled_wasm(sc["base"])]
    missing = [sc["id"] for sc in configs.hot_deploy_scenarios() if sc not in scenarios]
    if missing:
        hot["skipped"] = f"plugins not built: {', '.join(missing)}"
    for rnd in range(1, m["rounds"] + 1):
        for sc in scenarios:
            name = f"hot-{sc['id']}-{rnd}"
            rec = {"round": rnd, "target": sc["id"]}
            server = None
            try:
                server, plugin_dir, admin = start_hot(bench, name, sc["base"], sc["config"])
                sw = Swapper(server, plugin_dir, sc["probe"], sc["serving_when"], admin)
                if sw.serving_new():
                    raise BenchError(f"{name}: the probe cannot tell {sc['base']} from {sc['id']}")
                # Uncached: served by the baseline compiler's code, then
                # by the optimized build once it is made (and cached).
                rec["uncached_ms"], t0 = sw.swap(bundled_wasm(sc["id"]), True)
                rec["uncached_tier"] = sw.tier()
                rec["optimized_after_ms"] = sw.wait_optimized(t0)
                rec["back_ms"], _ = sw.swap(bundled_wasm(sc["base"]), False)
                rec["cached_ms"], _ = sw.swap(bundled_wasm(sc["id"]), True)
                rec["cached_tier"] = sw.tier()
                rec["status"] = "ok"
            except BenchError as e:
                rec["status"] = f"failed: {e}"
            finally:
                if server is not None:
                    bench.procs.stop(server.proc)
            hot["swap"].append(rec)
            if rec["status"] == "ok":
                log(f"  round {rnd} deploy {sc['id']:<15} uncached {rec['uncached_ms']:6.1f} ms "
                    f"({rec['uncached_tier']}; optimized after {rec['optimized_after_ms']:6.1f} ms)  "
                    f"cached {rec['cached_ms']:6.1f} ms ({rec['cached_tier']})")
            else:
                log(f"  round {rnd} deploy {sc['id']:<15} {rec['status'][:200]}")

    # 100 swaps (noop <-> header-rewrite) under continuous load.
    if bundled_wasm("noop") and bundled_wasm("header-rewrite"):
        sc = next(s for s in configs.hot_deploy_scenarios() if s["id"] == "header-rewrite")
        rec = {"swaps": HOT_SWAPS}
        server = wrk = None
        try:
            server, plugin_dir, admin = start_hot(bench, "hot-load", "noop", sc["config"])
            sw = Swapper(server, plugin_dir, sc["probe"], True, admin)
            c0 = cpu_ns(server.pids())
            wrk = wrk_background(server.port, 8, ["X-Remove-Me: 1"])
            time.sleep(0.5)
            waits = []
            for i in range(HOT_SWAPS):
                to_hr = i % 2 == 0
                wasm = bundled_wasm("header-rewrite" if to_hr else "noop")
                waits.append(sw.swap(wasm, to_hr)[0])
            time.sleep(0.2)
            w = wrk_stop(wrk)
            wrk = None
            rec.update({"requests": w["requests"], "non2xx": w["non2xx"],
                        "socket_errors": w["errors"],
                        "failed": w["non2xx"] + sum(w["errors"].values()),
                        "visible_ms": spread(waits),
                        "proxy_cpu_s": (cpu_ns(server.pids()) - c0) / 1e9,
                        "status": "ok"})
        except BenchError as e:
            rec["status"] = f"failed: {e}"
        finally:
            if wrk is not None:
                wrk.kill()
            if server is not None:
                bench.procs.stop(server.proc)
        hot["load"] = rec
        if rec["status"] == "ok":
            log(f"  {HOT_SWAPS} swaps under load: {rec['requests']} requests, "
                f"{rec['failed']} failed; visible after median "
                f"{rec['visible_ms']['median']:.1f} ms")
        else:
            log(f"  {HOT_SWAPS} swaps under load: {rec['status'][:200]}")

    # Start-up with 20 plugins whose compiled code is in the cache: the
    # bundled plugins, cycled under 20 names, one route each.
    ids = [sc["id"] for sc in scenarios]
    if ids:
        d = bench.dir("hot-many")
        plugin_dir = os.path.join(d, "plugins")
        cache_dir = os.path.join(d, "cache")
        os.makedirs(plugin_dir, exist_ok=True)
        by_id = {sc["id"]: sc for sc in scenarios}
        names, cfgs = [], []
        for i in range(MANY_PLUGINS):
            pid = ids[i % len(ids)]
            name = f"p{i + 1:02d}-{pid}"
            shutil.copyfile(bundled_wasm(pid), os.path.join(plugin_dir, f"{name}.wasm"))
            names.append(name)
            cfgs.append(by_id[pid]["config"])
        # The first route's plugin must let a plain GET through.
        first = names[ids.index("noop")] if "noop" in ids else names[0]
        samples = []
        for sample in range(m["startup_samples"] + 1):
            port = free_port()
            conf = configs.weir_many_plugins_config(port, bench.upstream.port, plugin_dir,
                                                    cache_dir, names, cfgs)
            argv = bench.argv_for("weir", d, conf)
            t0 = time.monotonic()
            proc = bench.procs.start(argv, PROXY_CPU, os.path.join(d, "stderr.log"))
            ok = wait_200(port, t0 + 30.0, proc=proc, path=f"/{first}/")
            ms = (time.monotonic() - t0) * 1000
            bench.procs.stop(proc)
            samples.append({"sample": sample, "cache": "cold" if sample == 0 else "warm",
                            "ms": ms if ok else None,
                            "status": "ok" if ok else "failed: no 200 within 30 s"})
        hot["startup"] = samples
        warm = [x["ms"] for x in samples if x["cache"] == "warm" and x["ms"] is not None]
        cold = samples[0]["ms"]
        log(f"  start-up with {MANY_PLUGINS} plugins: cold cache "
            f"{cold if cold is None else round(cold, 1)} ms, warm cache median "
            f"{statistics.median(warm) if warm else float('nan'):.1f} ms")


# --------------------------------------------------------------------------
# A plugin under attack
# --------------------------------------------------------------------------

# (id, Weir protected?, attacking connections, one request in N spins,
# path). The last but one floods a path no route serves (404s, as cheap as
# a refused call): what the attacking connections cost by their requests
# alone, with no plugin involved.
ATTACKS = [
    ("alone", True, 0, 1, "/spin"),
    ("1 conn, every call spins", True, 1, 1, "/spin"),
    ("2 conns, every call spins", True, 2, 1, "/spin"),
    ("2 conns, every 2nd call spins", True, 2, 2, "/spin"),
    ("2 conns, no plugin: 404s as fast as they come", True, 2, 0, "/none"),
    ("2 conns, every call spins, unprotected", False, 2, 1, "/spin"),
]


def attack_background(port, conns, every, path):
    argv = ["wrk", "-t1", f"-c{conns}", "-d600s", "--timeout", "5s", "-s", ATTACK_LUA,
            f"http://127.0.0.1:{port}{path}", "--", str(every), path]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def attack_stop(p):
    p.send_signal(signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        raise BenchError("attacking wrk did not stop within 30 s of SIGINT")
    m = re.search(r"^ATTACK_JSON (.*)$", out, re.M)
    if not m:
        raise BenchError(f"attacking wrk printed no summary: {out[-800:]}")
    return {int(k): v for k, v in json.loads(m.group(1)).items()}


def attack_phase(bench, results, log):
    """Issue 24: the plain route of a two-worker Weir measured alone, then
    while 1 or 2 connections keep sending requests that make the plugin
    of another route spin to its 10 ms deadline (every call, or every
    second call so that no breaker opens), with the defaults (breaker
    after 5, 25 % CPU share) and with both turned off."""
    out = results["attack"]
    if not os.path.exists(HOSTILE_WASM):
        out.append({"round": 0, "target": "all", "status": f"skipped: {HOSTILE_WASM} not built"})
        log(f"  skipped: {HOSTILE_WASM} not built")
        return
    for rnd in range(1, bench.mode["rounds"] + 1):
        servers = {}
        try:
            for protected in (True, False):
                name = f"attack-{'protected' if protected else 'unprotected'}-{rnd}"
                d = bench.dir(name)
                plugin_dir = os.path.join(d, "plugins")
                os.makedirs(plugin_dir, exist_ok=True)
                shutil.copyfile(HOSTILE_WASM, os.path.join(plugin_dir, "spinner.wasm"))
                port = free_port()
                conf = configs.weir_attack_config(port, bench.upstream.port, plugin_dir,
                                                  os.path.join(d, "cache"), protected)
                weir_check(d, conf)
                servers[protected] = bench.start(name, "weir", conf, port)
            for target, protected, conns, every, path in ATTACKS:
                server = servers[protected]
                attacker = attack_background(server.port, conns, every, path) if conns else None
                try:
                    run = bench.measure(server)
                finally:
                    seen = attack_stop(attacker) if attacker else {}
                run.update({"round": rnd, "target": target, "attacker_statuses": seen})
                out.append(run)
                answers = ", ".join(f"{k}: {v}" for k, v in sorted(seen.items())) or "-"
                log(f"  round {rnd} {target:<40} {run['rps']:8.0f} req/s  p99 "
                    f"{run['p99_us'] / 1000:7.2f} ms  plugin route: {answers}  {run['status']}")
        except BenchError as e:
            out.append({"round": rnd, "target": "all", "status": f"failed: {e}"})
            log(f"  round {rnd}: {e}")
        finally:
            for server in servers.values():
                bench.procs.stop(server.proc)


# --------------------------------------------------------------------------
# Observability cost (phase observe, scenario 11)
# --------------------------------------------------------------------------

# The callgrind part: wrk connections (profile.py's default, so the
# figures compare with RESULTS.md's profiles), and the responses wrk waits
# for in the warm-up and in the measured run, by mode.
CALLGRIND_CONNS = 10
CALLGRIND_REQUESTS = {"quick": (500, 3000), "full": (2000, 10000)}
# The longest a counted wrk run may take (Weir under callgrind serves
# about 2,000 requests a second on the development VM).
CALLGRIND_CAP_S = 120
# Warm-up seconds of each CPU run of the phase (its servers stay up over
# the rounds, so they are warm after the first).
OBSERVE_WARMUP_S = 1

# A valid W3C traceparent: version 00, trace id, parent id, sampled.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

# Weir's variants: target, `[server] metrics`, access log, tracing. The
# tracing one is measured twice, with clients sending a traceparent (the
# propagation path) and without (Weir starts the trace); the second row is
# "weir tracing, no header".
OBSERVE_WEIR = [
    ("weir metrics+log", True, True, False),
    ("weir metrics", True, False, False),
    ("weir off", False, False, False),
    ("weir tracing", False, False, True),
]
TRACING_NO_HEADER = "weir tracing, no header"
# Weir off measured with the same client traffic as "weir tracing" (a
# traceparent on every request): what the header costs without tracing
# (hyper reads it, Weir forwards it), so the tracing goal compares like
# with like.
OFF_WITH_HEADER = "weir off, traceparent"
# Each round, in this order: `off` in the middle of the rows compared
# with it, nginx's log right after nginx plain.
OBSERVE_ORDER = ["weir metrics+log", "weir metrics", "weir off", OFF_WITH_HEADER,
                 "weir tracing", TRACING_NO_HEADER, "nginx", "nginx log"]


def observe_base(target):
    """The row a Weir variant's delta is taken against: the tracing row
    against Weir off with the same traceparent traffic, the others against
    Weir off; nginx's log against nginx."""
    if not target.startswith("weir"):
        return "nginx"
    return OFF_WITH_HEADER if target == "weir tracing" else "weir off"


def prom_samples(port):
    """The samples of GET /metrics on `port`: (name, labels text, value)."""
    status, _, body = http_get(port, whole=True, path="/metrics", timeout=5.0)
    if status != 200:
        raise BenchError(f"GET /metrics on the admin listener answered {status}")
    out = []
    for line in body.decode("utf-8", "replace").splitlines():
        m = re.match(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and not line.startswith("#"):
            try:
                out.append((m.group(1), m.group(2) or "", float(m.group(3))))
            except ValueError:
                pass
    return out


def prom_sum(samples, name, label=None):
    return sum(v for n, labels, v in samples if n == name and (label is None or label in labels))


def route_requests(admin_port):
    """Requests counted for route `all` (weir_requests_total, every method
    and status class)."""
    return prom_sum(prom_samples(admin_port), "weir_requests_total", 'route="all"')


def wait_metrics(admin_port, limit_s=30.0):
    """Waits until the admin listener answers /metrics (Weir opens it after
    its traffic listeners: under valgrind, tens of milliseconds later)."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            return prom_samples(admin_port)
        except BenchError:
            if time.monotonic() > deadline:
                raise BenchError(f"the admin listener did not answer /metrics within {limit_s}s")
            time.sleep(0.1)


def log_counters(admin_port):
    s = prom_samples(admin_port)
    return {k: prom_sum(s, f"weir_access_log_lines_{k}_total")
            for k in ("queued", "dropped", "written")}


def settle_file(path, quiet_s=0.3, limit_s=10.0):
    """Waits until `path` stops growing (a log writer done with its queue);
    its size."""
    deadline = time.monotonic() + limit_s
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = os.path.getsize(path) if os.path.exists(path) else 0
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return size
        time.sleep(0.05)
    raise BenchError(f"{path} still growing {limit_s}s after the load stopped")


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return n
            n += chunk.count(b"\n")


def last_line(path):
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 65536))
        lines = [ln for ln in f.read().split(b"\n") if ln.strip()]
    return lines[-1].decode("utf-8", "replace") if lines else None


def upstream_traceparent(port, headers=()):
    """The traceparent the upstream received for a request through `port`
    (its trace echo path), or '' when none."""
    status, _, body = http_get(port, headers, whole=True, path=configs.TRACE_ECHO_PATH)
    m = re.match(rb"traceparent=(\S*) tracestate=", body)
    if status != 200 or not m:
        raise BenchError(f"GET {configs.TRACE_ECHO_PATH} answered {status} {body[:120]!r}")
    return m.group(1).decode()


def observe_log_file(bench, name):
    """Where a variant's access log goes: a folder of its own, away from
    the configuration file's. Weir watches its configuration's folder for
    changes, so a log written there would wake the watcher (an inotify
    event and `notify`'s event loop) on every write, which the log's cost
    does not include when it lives elsewhere, as logs do."""
    return os.path.join(bench.dir("observe-logs"), f"{name}.log")


class ObserveTarget:
    """A server of the observe phase and what its checks need."""

    def __init__(self, server, kind, metrics=False, log_file=None, tracing=False,
                 admin_port=None):
        self.server, self.kind = server, kind
        self.metrics, self.log_file, self.tracing = metrics, log_file, tracing
        self.admin_port = admin_port


def observe_check(t):
    """Shows that a variant does what it is measured doing: the upstream's
    answer; Weir's route counter moves exactly when metrics are on; the
    access log gets one JSON line per request; with tracing the upstream
    receives a traceparent continuing the client's trace (and a new one
    without), and without tracing none is added. Returns what it saw;
    raises on the first mismatch."""
    srv = t.server
    status, _, body = http_get(srv.port, whole=True)
    if status != 200 or body != configs.UPSTREAM_BODY.encode():
        raise BenchError(f"answered {status} {body[:80]!r}, not the upstream's body")
    seen = {"target": srv.name}
    probes = 20
    if t.kind == "weir":
        before = route_requests(t.admin_port)
    if t.log_file:
        settle_file(t.log_file)
        lines_before = count_lines(t.log_file)
    for _ in range(probes):
        if http_get(srv.port) != 200:
            raise BenchError("a probe request was not answered 200")
    if t.kind == "weir":
        deadline = time.monotonic() + (2.0 if t.metrics else 0.5)
        counted = 0
        while time.monotonic() < deadline:
            counted = route_requests(t.admin_port) - before
            if t.metrics and counted >= probes:
                break
            time.sleep(0.05)
        # (+1: the first request above may be counted only now.)
        if t.metrics and not probes <= counted <= probes + 1:
            raise BenchError(f"metrics on, but weir_requests_total{{route=\"all\"}} moved by "
                             f"{counted:.0f} for {probes} requests")
        if not t.metrics and counted:
            raise BenchError(f"metrics = false, but weir_requests_total{{route=\"all\"}} moved "
                             f"by {counted:.0f}")
        seen["route_requests_counted"] = int(counted)
    if t.log_file:
        settle_file(t.log_file)
        lines = count_lines(t.log_file) - lines_before
        if lines < probes:
            raise BenchError(f"{lines} access log lines for {probes} requests in {t.log_file}")
        text = last_line(t.log_file)
        try:
            line = json.loads(text)
        except (TypeError, ValueError):
            raise BenchError(f"the access log's last line is not JSON: {text!r:.300}")
        if line.get("status") != 200 or line.get("method") != "GET" or line.get("path") != "/":
            raise BenchError(f"the access log's last line is not the probe's: {text:.300}")
        seen["log_line"] = line
    if t.kind == "weir":
        plain = upstream_traceparent(srv.port)
        if t.tracing:
            forwarded = upstream_traceparent(srv.port, [f"traceparent: {TRACEPARENT}"])
            m = TRACEPARENT_RE.match(forwarded)
            if not m or m.group(1) != TRACE_ID:
                raise BenchError(f"tracing on, the client sent traceparent {TRACEPARENT}, the "
                                 f"upstream received {forwarded!r}: the trace was not continued")
            m2 = TRACEPARENT_RE.match(plain)
            if not m2 or m2.group(1) == TRACE_ID:
                raise BenchError(f"tracing on and no traceparent from the client: the upstream "
                                 f"received {plain!r}, not a new trace")
            seen.update(traceparent_sent=TRACEPARENT, traceparent_upstream=forwarded,
                        traceparent_upstream_no_header=plain)
        elif plain:
            raise BenchError(f"tracing off, yet the upstream received traceparent {plain!r}")
    return seen


def observe_measure(bench, t, server=None):
    """One CPU run (bench.measure, OBSERVE_WARMUP_S of warm-up); with an
    access log, the file is emptied first and must then hold a line for
    every request wrk counted, and Weir must have dropped none."""
    server = server or t.server
    if t.log_file:
        settle_file(t.log_file)
        os.truncate(t.log_file, 0)
        c0 = log_counters(t.admin_port) if t.kind == "weir" else None
    run = bench.measure(server, warmup=OBSERVE_WARMUP_S)
    if t.log_file and run["status"] == "ok":
        problems = []
        try:
            size = settle_file(t.log_file)
            lines = count_lines(t.log_file)
            served = run["warmup"]["requests"] + run["requests"]
            run.update(log_lines=lines, log_bytes=size)
            if lines < served:
                problems.append(f"the access log has {lines} lines for {served} requests")
            if c0 is not None:
                c1 = log_counters(t.admin_port)
                run["log_dropped"] = int(c1["dropped"] - c0["dropped"])
                if run["log_dropped"]:
                    problems.append(f"Weir dropped {run['log_dropped']} access log lines "
                                    "(writer queue full): the run did less than the log's work")
        except (BenchError, OSError) as e:
            problems.append(f"access log check: {e}")
        if problems:
            run["status"] = "failed: " + "; ".join(problems)
        os.truncate(t.log_file, 0)
    return run


def wrk_count(port, requests, conns, headers=(), cap_s=CALLGRIND_CAP_S):
    """wrk until `requests` responses (report.lua's limit: a few more
    arrive in its last turn of the loop, and up to `conns` are left in
    flight), then SIGINT; wrk's summary. Raises if the count is not
    reached within `cap_s`."""
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{cap_s}s", "--timeout", "10s", "-s", LUA]
    for h in headers:
        argv += ["-H", h]
    argv += [f"http://127.0.0.1:{port}/", "--", str(requests)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    out = b""
    deadline = time.monotonic() + cap_s + 10
    try:
        while b"BENCH_LIMIT\n" not in out:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise BenchError(f"wrk did not get {requests} responses within {cap_s + 10}s")
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break  # wrk ended (the cap, or an error): its summary says
            out += chunk
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=30)
        out += rest
    except subprocess.TimeoutExpired:
        raise BenchError("wrk did not stop within 30 s of SIGINT")
    finally:
        sel.close()
        if p.poll() is None:
            p.kill()
            p.wait()
    text = out.decode("utf-8", "replace")
    m = re.search(r"^BENCH_JSON (.*)$", text, re.M)
    if not m:
        raise BenchError(f"wrk printed no summary (exit {p.returncode}): {text[-800:]}")
    w = json.loads(m.group(1))
    if "BENCH_LIMIT" not in text:
        raise BenchError(f"wrk stopped after {w['requests']} of {requests} responses")
    return w


def wrk_problems(w, what):
    errors = sum(w["errors"].values())
    if w["non2xx"] or errors:
        return [f"{what}: {w['non2xx']} non-2xx (first {w['first_non2xx_status']}), "
                f"socket errors {w['errors']}"]
    return []


def callgrind_start(bench, name, conf, port, out_file, headers=(), plugins=False):
    """The release weir under `valgrind --tool=callgrind` (writing its
    dumps to `out_file`.N), pinned to the proxy CPU, once it answers 200
    to a request with `headers`. With `plugins`, valgrind runs under
    no_auxv.py, without which Weir dies at its first plugin call (that
    file says why); the configuration must also keep each plugin's
    `max_instances` low, since valgrind refuses the pooling allocator's
    reservation for the default."""
    d = bench.dir(name)
    for old in glob.glob(out_file + "*"):
        os.remove(old)
    argv = CALLGRIND_ENV + ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"] + \
        bench.argv_for("weir", d, conf)
    if plugins:
        argv = [sys.executable, NO_AUXV] + argv
    log = os.path.join(d, "stderr.log")
    proc = bench.procs.start(argv, PROXY_CPU, log)
    if not wait_200(port, time.monotonic() + 60, headers=headers, proc=proc, pause=0.05):
        how = (f"exited ({proc.returncode})" if proc.poll() is not None
               else "did not answer within 60 s")
        bench.procs.stop(proc)
        raise BenchError(f"{name}: weir under valgrind {how}:\n{tail(log)}")
    return Server(name, port, proc, log, headers)


def callgrind_control(proc, flag):
    """`callgrind_control -z` (zero the counters) or `-d` (dump them to a
    new file, and zero them)."""
    r = subprocess.run(["callgrind_control", flag, str(proc.pid)], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        raise BenchError(f"callgrind_control {flag} failed: {r.stdout[-400:]}{r.stderr[-400:]}")


def callgrind_dumps(out_file):
    """The dumps callgrind_control -d wrote (`out_file`.1, .2, ...), in order."""
    found = [(int(f.rsplit(".", 1)[1]), f) for f in glob.glob(out_file + ".*")
             if f.rsplit(".", 1)[1].isdigit()]
    return [f for _, f in sorted(found)]


def callgrind_total(path):
    """Total instructions (Ir) of a callgrind dump: its `totals:` line
    (`summary:` in older formats)."""
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"^(?:totals|summary):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    raise BenchError(f"no totals line in {path}")


def callgrind_measure(bench, srv, out_file, requests, warmup, headers=(), conns=CALLGRIND_CONNS,
                      log_file=None, auth=None):
    """One measured stretch of a Weir under callgrind: a counted warm-up,
    the counters zeroed, `requests` responses, the counters dumped. The
    instructions (Ir, user space, every thread) divided by the requests
    wrk counted; with `auth` (an AuthService, phase auth), the requests
    it answered during the stretch."""
    problems = []
    lines0 = count_lines(log_file) if log_file else None
    warm = wrk_count(srv.port, warmup, conns, headers)
    problems += wrk_problems(warm, "warm-up")
    if log_file:
        settle_file(log_file)
    done = len(callgrind_dumps(out_file))
    callgrind_control(srv.proc, "-z")
    a0 = auth.answered() if auth else None
    t0 = time.monotonic()
    w = wrk_count(srv.port, requests, conns, headers)
    seconds = time.monotonic() - t0
    a1 = auth.answered() if auth else None
    if log_file:
        # The writer's work for these requests belongs in the dump.
        settle_file(log_file)
    callgrind_control(srv.proc, "-d")
    dumps = callgrind_dumps(out_file)
    if len(dumps) != done + 1:
        raise BenchError(f"expected one new callgrind dump next to {out_file}, found "
                         f"{len(dumps) - done}")
    total = callgrind_total(dumps[-1])
    problems += wrk_problems(w, "measured run")
    n = w["requests"]
    log_lines = None
    if log_file:
        # Weir's /metrics is not read here (under valgrind, a scrape
        # crashes Weir: rustix's vDSO lookup for the process metrics), so
        # dropped lines show as missing ones.
        log_lines = count_lines(log_file) - lines0
        if log_lines < warm["requests"] + n:
            problems.append(f"the access log got {log_lines} lines for {warm['requests'] + n} "
                            "requests: Weir dropped lines (writer queue full), work not done")
    if n == 0:
        problems.append("no requests completed")
    if srv.proc.poll() is not None:
        problems.append(f"{srv.name} exited during the run")
    rec = {"requests": n, "warmup_requests": warm["requests"], "conns": conns,
           "ir_total": total, "ir_per_req": total / n if n else None,
           "seconds": round(seconds, 2), "dump": os.path.basename(dumps[-1]),
           "log_lines": log_lines,
           "status": "failed: " + "; ".join(problems) if problems else "ok"}
    if auth:
        rec["auth_calls"] = a1 - a0
    return rec


def observe_phase(bench, results, log):
    """Scenario 11 (issue 20): what metrics, a JSON access log to a file and
    W3C trace propagation cost per request, against Weir with all of it
    off, beside nginx without and with its access log; keep-alive plain
    proxying as in scenario 1. CPU time per request over the rounds, then
    user-space instructions per request under callgrind for each Weir
    variant."""
    m = bench.mode
    out = results["observe"]
    up = bench.upstream
    targets = {}
    try:
        for name, metrics, access_log, tracing in OBSERVE_WEIR:
            port, admin_port = free_port(), free_port()
            dirname = "observe-" + name.replace(" ", "-")
            d = bench.dir(dirname)
            log_file = observe_log_file(bench, dirname) if access_log else None
            conf = configs.weir_observe(port, up.port, admin_port, metrics, log_file, tracing)
            try:
                weir_check(d, conf)
            except BenchError as e:
                first = refusal_line(e)
                what = "[tracing]" if tracing and "tracing" in first else "the configuration"
                reason = f"skipped: weir check refused {what}: {first}"
                results["skipped"].append({"group": "observe", "target": name, "reason": reason})
                if tracing:
                    results["skipped"].append({"group": "observe", "target": TRACING_NO_HEADER,
                                               "reason": reason})
                log(f"  {name}: {reason}")
                continue
            srv = None
            try:
                srv = bench.start(dirname, "weir", conf, port)
                wait_metrics(admin_port)
            except BenchError as e:
                if srv is not None:
                    bench.procs.stop(srv.proc)
                reason = f"FAILED to start, not measured: {e}"
                results["skipped"].append({"group": "observe", "target": name, "reason": reason})
                if tracing:
                    results["skipped"].append({"group": "observe", "target": TRACING_NO_HEADER,
                                               "reason": reason})
                log(f"  {name}: {reason}")
                continue
            srv.name = name
            targets[name] = ObserveTarget(srv, "weir", metrics, log_file, tracing, admin_port)
            if tracing:
                srv.headers = [f"traceparent: {TRACEPARENT}"]
        for name, access_log in (("nginx", False), ("nginx log", True)):
            port = free_port()
            dirname = "observe-" + name.replace(" ", "-")
            d = bench.dir(dirname)
            log_file = observe_log_file(bench, dirname) if access_log else None
            srv = bench.start(dirname, "nginx",
                              configs.proxy_nginx(d, port, up.port, access_log=log_file), port)
            srv.name = name
            targets[name] = ObserveTarget(srv, "nginx", log_file=log_file)

        for name, t in list(targets.items()):
            try:
                seen = observe_check(t)
            except BenchError as e:
                reason = f"FAILED set-up check, not measured: {e}"
                results["skipped"].append({"group": "observe", "target": name, "reason": reason})
                if t.tracing:
                    results["skipped"].append({"group": "observe", "target": TRACING_NO_HEADER,
                                               "reason": reason})
                log(f"  {name}: {reason}")
                bench.procs.stop(targets.pop(name).server.proc)
                continue
            out["checks"].append(seen)
            detail = []
            if "route_requests_counted" in seen:
                detail.append(f"route counter +{seen['route_requests_counted']}")
            if "log_line" in seen:
                detail.append(f"log fields: {', '.join(seen['log_line'])}")
            if "traceparent_upstream" in seen:
                detail.append(f"upstream got traceparent {seen['traceparent_upstream']} "
                              f"(sent {TRACEPARENT}), without one "
                              f"{seen['traceparent_upstream_no_header']}")
            log(f"  {name}: set-up check ok; {'; '.join(detail) or 'answers the upstream'}")

        plan = []
        for name in OBSERVE_ORDER:
            if name == TRACING_NO_HEADER:
                t = targets.get("weir tracing")
                if t:
                    s = t.server
                    plan.append((name, t, Server(name, s.port, s.proc, s.log)))
            elif name == OFF_WITH_HEADER:
                t = targets.get("weir off")
                if t:
                    s = t.server
                    plan.append((name, t, Server(name, s.port, s.proc, s.log,
                                                 headers=[f"traceparent: {TRACEPARENT}"])))
            elif name in targets:
                plan.append((name, targets[name], None))
        for rnd in range(1, m["rounds"] + 1):
            for name, t, server in plan:
                t0 = time.monotonic()
                try:
                    run = observe_measure(bench, t, server)
                except BenchError as e:
                    run = {"status": f"failed: {e}"}
                run.update(round=rnd, group="observe", target=name)
                results["runs"].append(run)
                extra = ""
                if run.get("proxy_user_cpu_us_per_req") is not None:
                    extra = f"  (user {run['proxy_user_cpu_us_per_req']:.2f} us/req)"
                if run.get("log_lines") is not None:
                    extra += f"  {run['log_lines']} log lines"
                log(f"  round {rnd} {name:<24} {fmt_run(run)}{extra}  "
                    f"({time.monotonic() - t0:.1f}s)")
    except BenchError as e:
        results["skipped"].append({"group": "observe", "target": "all", "reason": f"FAILED: {e}"})
        log(f"  {e}")
    finally:
        for t in targets.values():
            bench.procs.stop(t.server.proc)
    weir_ok = [(name, t) for name, t in targets.items() if t.kind == "weir"]
    observe_callgrind(bench, out, log, weir_ok)


def observe_callgrind(bench, out, log, weir_targets):
    """User-space instructions per request of each Weir variant that passed
    its check, each in a fresh Weir under callgrind (the tracing one
    measured with the traceparent, then without)."""
    missing = [t for t in ("valgrind", "callgrind_control") if shutil.which(t) is None]
    if missing:
        out["callgrind_skipped"] = (f"not measured: {', '.join(missing)} not found "
                                    "(run.sh installs valgrind)")
        log(f"  callgrind: {out['callgrind_skipped']}")
        return
    warmup, requests = CALLGRIND_REQUESTS[bench.mode["name"]]
    up = bench.upstream
    for name, t in weir_targets:
        port, admin_port = free_port(), free_port()
        cg_name = "observe-callgrind-" + name.replace(" ", "-")
        d = bench.dir(cg_name)
        log_file = observe_log_file(bench, cg_name) if t.log_file else None
        conf = configs.weir_observe(port, up.port, admin_port, t.metrics, log_file, t.tracing)
        runs = [(name, [f"traceparent: {TRACEPARENT}"] if t.tracing else [])]
        if t.tracing:
            runs.append((TRACING_NO_HEADER, []))
        if name == "weir off":
            runs.append((OFF_WITH_HEADER, [f"traceparent: {TRACEPARENT}"]))
        srv = None
        t0 = time.monotonic()
        try:
            weir_check(d, conf)
            out_file = os.path.join(d, "callgrind.out")
            srv = callgrind_start(bench, cg_name, conf, port, out_file)
            for target, headers in runs:
                try:
                    rec = callgrind_measure(bench, srv, out_file, requests, warmup, headers,
                                            log_file=log_file)
                except BenchError as e:
                    rec = {"status": f"failed: {e}"}
                rec["target"] = target
                out["callgrind"].append(rec)
                if rec["status"] == "ok":
                    log(f"  callgrind {target:<24} {rec['ir_per_req']:>9,.0f} instructions/request "
                        f"({rec['requests']} requests, {rec['seconds']:.1f}s)")
                else:
                    log(f"  callgrind {target:<24} {rec['status'][:300]}")
        except BenchError as e:
            for target, _ in runs:
                if not any(r["target"] == target for r in out["callgrind"]):
                    out["callgrind"].append({"target": target, "status": f"failed: {e}"})
            log(f"  callgrind {name}: {e}")
        finally:
            if srv is not None:
                # The dumps are taken: no need to wait for the final one.
                bench.procs.stop(srv.proc, grace=2.0)
        log(f"  callgrind {name}: {time.monotonic() - t0:.1f}s")


# --------------------------------------------------------------------------
# Phase auth (scenario 12, issue 21): forward authentication
# --------------------------------------------------------------------------

AUTH_API_KEY = "weir api-key"
AUTH_CACHED = "weir ext-auth, cached"
AUTH_EVERY = "weir ext-auth, every request"
AUTH_NGINX = "nginx auth_request"
# Each round in this order: each row right after the one it is compared
# with (the goals pair the cached decision with api-key, and a call on
# every request with nginx; the call's own cost is every request's row
# over the cached one).
AUTH_ORDER = [AUTH_API_KEY, AUTH_CACHED, AUTH_EVERY, AUTH_NGINX]
# The row each Weir variant's CPU and instruction deltas are taken against.
AUTH_DELTA_BASE = {AUTH_CACHED: AUTH_API_KEY, AUTH_EVERY: AUTH_CACHED}
# The cached row's decision lives this long: longer than the phase, so
# the one call of its set-up check is the only one (ext-auth's maximum).
AUTH_CACHE_TTL = "1h"
# Requests of the set-up check after the first one with the key.
AUTH_PROBES = 20
# What every request of the phase carries: the benchmark's API key.
AUTH_KEY = [f"{configs.API_KEY_HEADER}: {configs.BENCH_KEY}"]


class AuthService:
    """The authorization service of phase auth (configs.auth_service_nginx,
    one process for every row, on the load CPU) and its request counter."""

    def __init__(self, server):
        self.server = server
        self.reads = 0

    def answered(self):
        """Requests the service answered so far, less the counter's own
        reads (nginx's `stub_status` counts the request that reads it) and
        the polls of its start: only differences mean anything."""
        status, _, body = http_get(self.server.port, whole=True, path=configs.AUTH_STATUS_PATH)
        if status is not None:
            self.reads += 1
        m = re.search(rb"\n\s*\d+\s+\d+\s+(\d+)\s*\n", body)
        if status != 200 or not m:
            raise BenchError(f"the authorization service's counter answered {status} "
                             f"{body[:120]!r}")
        return int(m.group(1)) - self.reads


class AuthTarget:
    """A server of phase auth: the calls it makes to the service for the
    set-up check's first request with the key and for the next
    AUTH_PROBES (`calls`), and for each request of a run (`per_request`: 0
    or 1); whether it sets the service's `x-user` on the request (`user`);
    for Weir, its plugin (id, configuration, folder), which the callgrind
    run serves again."""

    def __init__(self, server, kind, calls, per_request, user, plugin=None):
        self.server, self.kind = server, kind
        self.calls, self.per_request, self.user = calls, per_request, user
        self.plugin = plugin


def auth_weir_variants():
    """Weir's rows: target, plugin id, cargo's file names, the plugin's
    configuration, the calls of the set-up check (first request with the
    key, the next AUTH_PROBES), calls per request in a run, and whether
    the service's `x-user` reaches the upstream. api-key as in scenario 2
    (its configuration from configs.plugin_scenarios)."""
    api = next(sc for sc in configs.plugin_scenarios() if sc["id"] == "api-key")
    ext = ["ext_auth", "ext-auth"]
    return [
        (AUTH_API_KEY, "api-key", api["files"], api["config"], (0, 0), 0, False),
        (AUTH_CACHED, "ext-auth", ext, configs.ext_auth_config(AUTH_CACHE_TTL), (1, 0), 0, True),
        (AUTH_EVERY, "ext-auth", ext, configs.ext_auth_config("0s"), (1, AUTH_PROBES), 1, True),
    ]


def auth_check(t, svc):
    """Shows that a row does what it is measured doing: the first request
    with the key is answered by the upstream, and it and the next
    AUTH_PROBES make the calls the row stands for (the cached row one,
    then none; the uncached rows one each; api-key none); without the key
    and with a wrong one the answer is 401 (with the service's
    `WWW-Authenticate` where the service refused); with the key the
    upstream gets the service's `x-user: bench` (the client's own replaced)
    or, for api-key, the consumer. Returns what it saw; raises on the
    first mismatch."""
    srv = t.server
    key = AUTH_KEY
    a0 = svc.answered()
    status, _, body = http_get(srv.port, key, whole=True)
    if status != 200 or body != configs.UPSTREAM_BODY.encode():
        raise BenchError(f"with the key: answered {status} {body[:80]!r}, not the upstream's body")
    a1 = svc.answered()
    for _ in range(AUTH_PROBES):
        if http_get(srv.port, key) != 200:
            raise BenchError("a request with the key was not answered 200")
    a2 = svc.answered()
    calls = (a1 - a0, a2 - a1)
    if calls != t.calls:
        raise BenchError(f"the authorization service answered {calls[0]} call(s) for the first "
                         f"request with the key and {calls[1]} for the next {AUTH_PROBES}; "
                         f"expected {t.calls[0]} and {t.calls[1]}")
    refused = "www-authenticate" if t.user else None
    wrong = [f"{configs.API_KEY_HEADER}: wrong-key"]
    check_behaviour(srv, [([], "/", 401, None, refused), (wrong, "/", 401, None, refused)])
    if t.user:
        headers, path = key + [f"{configs.AUTH_USER_HEADER}: mallory"], configs.AUTH_ECHO_PATH
        want = f"{configs.AUTH_USER_HEADER}={configs.AUTH_USER} "
    else:
        headers, path = key, configs.ECHO_PATH
        want = f"x-consumer={configs.API_KEYS[configs.BENCH_KEY]} x-api-key=\n"
    status, _, body = http_get(srv.port, headers, whole=True, path=path)
    if status != 200 or want.encode() not in body:
        raise BenchError(f"GET {path} with {headers} answered {status} {body[:200]!r}, "
                         f"expected {want!r} from the upstream")
    return {"target": srv.name, "calls_first": calls[0], f"calls_next_{AUTH_PROBES}": calls[1],
            "upstream_saw": body.decode("latin-1").strip()}


def auth_run_problems(t, run, conns):
    """What a run's count of calls says: the rows that call on every
    request called at least once for each answered request (and not for
    many more than were in flight), the others never."""
    calls, n = run.get("auth_calls"), run.get("requests") or 0
    if calls is None:
        return []
    if t.per_request == 0 and calls:
        return [f"the authorization service answered {calls} calls during the run, expected none"]
    if t.per_request and not n <= calls <= n + 2 * conns:
        return [f"the authorization service answered {calls} calls for {n} requests"]
    return []


def auth_phase(bench, results, log):
    """Scenario 12 (issue 21): forward authentication. Weir with api-key,
    with ext-auth answering from its decision cache, with ext-auth asking
    the service on every request, and nginx with `auth_request` to the
    same service, taking turns each round; then user-space instructions
    per request under callgrind for each Weir row."""
    m = bench.mode
    out = results["auth"]
    up = bench.upstream
    targets = {}
    svc = None
    cache_dir = bench.dir("auth-plugin-cache")
    try:
        svc_port = free_port()
        d = bench.dir("auth-service")
        svc = AuthService(bench.start(
            "auth-service", "nginx", configs.auth_service_nginx(d, svc_port), svc_port,
            cpu=LOAD_CPU, ready=lambda deadline, proc: wait_200(
                svc_port, deadline, proc=proc, pause=0.005, path=configs.AUTH_STATUS_PATH)))
        for name, pid, files, config, calls, per_request, user in auth_weir_variants():
            wasm = configs.find_plugin(REPO, files)
            if wasm is None:
                reason = ("skipped: plugin runtime not available (no "
                          f"{configs.PLUGIN_DIR}/{files[0]}.wasm)")
                results["skipped"].append({"group": "auth", "target": name, "reason": reason})
                log(f"  {name}: {reason}")
                continue
            dirname = "auth-" + re.sub(r"[^a-z0-9]+", "-", name)
            plugin_dir = plugin_folder(bench, dirname, pid, wasm)
            port = free_port()
            conf = configs.weir_auth_config(port, up.port, plugin_dir, cache_dir, pid, config,
                                            auth_port=svc.server.port if pid == "ext-auth"
                                            else None)
            try:
                weir_check(bench.dir(dirname), conf)
            except BenchError as e:
                reason = f"skipped: weir check refused the configuration: {refusal_line(e)}"
                results["skipped"].append({"group": "auth", "target": name, "reason": reason})
                log(f"  {name}: {reason}")
                continue
            try:
                # Ready once it answers at all: a request with the key
                # would fill the cached row's decision before its check.
                srv = bench.start(dirname, "weir", conf, port, headers=AUTH_KEY,
                                  ready=lambda deadline, proc, port=port: wait_answer(
                                      port, deadline, proc))
            except BenchError as e:
                reason = f"FAILED to start, not measured: {e}"
                results["skipped"].append({"group": "auth", "target": name, "reason": reason})
                log(f"  {name}: {reason}")
                continue
            srv.name = name
            targets[name] = AuthTarget(srv, "weir", calls, per_request, user,
                                       (pid, config, plugin_dir))
        port = free_port()
        d = bench.dir("auth-nginx")
        srv = bench.start("auth-nginx", "nginx",
                          configs.proxy_nginx(d, port, up.port, auth_port=svc.server.port), port,
                          headers=AUTH_KEY)
        srv.name = AUTH_NGINX
        targets[AUTH_NGINX] = AuthTarget(srv, "nginx", (1, AUTH_PROBES), 1, True)

        for name, t in list(targets.items()):
            try:
                seen = auth_check(t, svc)
            except BenchError as e:
                reason = f"FAILED set-up check, not measured: {e}"
                results["skipped"].append({"group": "auth", "target": name, "reason": reason})
                log(f"  {name}: {reason}")
                bench.procs.stop(targets.pop(name).server.proc)
                continue
            out["checks"].append(seen)
            log(f"  {name}: set-up check ok; service calls {seen['calls_first']} for the first "
                f"request with the key, {seen[f'calls_next_{AUTH_PROBES}']} for the next "
                f"{AUTH_PROBES}; upstream saw {seen['upstream_saw']}")

        plan = [(name, targets[name]) for name in AUTH_ORDER if name in targets]
        for rnd in range(1, m["rounds"] + 1):
            for name, t in plan:
                t0 = time.monotonic()
                try:
                    run = bench.measure(t.server, warmup=OBSERVE_WARMUP_S, auth=svc)
                except BenchError as e:
                    run = {"status": f"failed: {e}"}
                problems = auth_run_problems(t, run, m["conns"]) if run["status"] == "ok" else []
                if problems:
                    run["status"] = "failed: " + "; ".join(problems)
                run.update(round=rnd, group="auth", target=name)
                results["runs"].append(run)
                extra = ""
                if run.get("proxy_user_cpu_us_per_req") is not None:
                    extra = f"  (user {run['proxy_user_cpu_us_per_req']:.2f} us/req)"
                if run.get("auth_calls") is not None:
                    extra += f"  {run['auth_calls']} service calls"
                log(f"  round {rnd} {name:<30} {fmt_run(run)}{extra}  "
                    f"({time.monotonic() - t0:.1f}s)")
    except BenchError as e:
        results["skipped"].append({"group": "auth", "target": "all", "reason": f"FAILED: {e}"})
        log(f"  {e}")
    finally:
        for t in targets.values():
            bench.procs.stop(t.server.proc)
    if svc is not None:
        try:
            weir_ok = [(name, t) for name, t in targets.items() if t.kind == "weir"]
            auth_callgrind(bench, out, log, weir_ok, svc, cache_dir)
        finally:
            bench.procs.stop(svc.server.proc)


def auth_callgrind(bench, out, log, weir_targets, svc, cache_dir):
    """User-space instructions per request of each Weir row that passed its
    check, each in a fresh Weir under callgrind (its plugin with
    `max_instances = 1`, the compiled code from the CPU runs' cache), with
    the calls the service answered during the measured stretch."""
    missing = [t for t in ("valgrind", "callgrind_control") if shutil.which(t) is None]
    if missing:
        out["callgrind_skipped"] = (f"not measured: {', '.join(missing)} not found "
                                    "(run.sh installs valgrind)")
        log(f"  callgrind: {out['callgrind_skipped']}")
        return
    warmup, requests = CALLGRIND_REQUESTS[bench.mode["name"]]
    up = bench.upstream
    for name, t in weir_targets:
        pid, config, plugin_dir = t.plugin
        port = free_port()
        cg_name = "auth-callgrind-" + re.sub(r"[^a-z0-9]+", "-", name)
        d = bench.dir(cg_name)
        conf = configs.weir_auth_config(port, up.port, plugin_dir, cache_dir, pid, config,
                                        auth_port=svc.server.port if pid == "ext-auth" else None,
                                        max_instances=1)
        srv = None
        t0 = time.monotonic()
        try:
            weir_check(d, conf)
            out_file = os.path.join(d, "callgrind.out")
            srv = callgrind_start(bench, cg_name, conf, port, out_file, t.server.headers,
                                  plugins=True)
            rec = callgrind_measure(bench, srv, out_file, requests, warmup, t.server.headers,
                                    auth=svc)
            problems = auth_run_problems(t, rec, CALLGRIND_CONNS) if rec["status"] == "ok" \
                else []
            if problems:
                rec["status"] = "failed: " + "; ".join(problems)
        except BenchError as e:
            rec = {"status": f"failed: {e}"}
        finally:
            if srv is not None:
                bench.procs.stop(srv.proc, grace=2.0)
        rec["target"] = name
        out["callgrind"].append(rec)
        if rec["status"] == "ok":
            log(f"  callgrind {name:<30} {rec['ir_per_req']:>9,.0f} instructions/request "
                f"({rec['requests']} requests, {rec['auth_calls']} service calls, "
                f"{rec['seconds']:.1f}s)")
        else:
            log(f"  callgrind {name:<30} {rec['status'][:300]}")
        log(f"  callgrind {name}: {time.monotonic() - t0:.1f}s")


# --------------------------------------------------------------------------
# Phase fleet (scenario 13, issue 22): fleet-wide plugin state through Redis
# --------------------------------------------------------------------------

FLEET_LOCAL = "weir rate-limit, local"
FLEET_SYNC = "weir rate-limit, fleet sync"
FLEET_STRICT = "weir rate-limit, fleet strict"
# The overhead rows: target, `[plugin_limits.rate-limit] fleet` (None: the
# plugin's `fleet = false` and no `[state]`). Each round in this order:
# sync right after local, which its goal compares it with.
FLEET_VARIANTS = [(FLEET_LOCAL, None), (FLEET_SYNC, "sync"), (FLEET_STRICT, "strict")]
FLEET_ORDER = [name for name, _ in FLEET_VARIANTS]
# The row each fleet row's CPU and instruction deltas are taken against.
FLEET_DELTA_BASE = {FLEET_SYNC: FLEET_LOCAL, FLEET_STRICT: FLEET_LOCAL}
# `[state] sync_interval` of every sync row.
FLEET_SYNC_INTERVAL = "100ms"
# Requests of the set-up check.
FLEET_PROBES = 20
# The admission rows: target, fleet mode (None: `fleet = false`, no
# Redis), and the goal's bound on admitted / the limit's allowance.
ACC_STRICT = "fleet strict, 3 nodes"
ACC_SYNC = "fleet sync 100 ms, 3 nodes"
ACC_LOCAL = "local, 3 nodes"
ACC_VARIANTS = [(ACC_STRICT, "strict", 1.02), (ACC_SYNC, "sync", 1.10), (ACC_LOCAL, None, None)]
ACC_ORDER = [name for name, _, _ in ACC_VARIANTS]
ACC_NODES = 3
# Offered load per node (h2load --rps is per client connection): 1000
# requests a second from 10 keep-alive connections, 3000 over the fleet.
ACC_RPS_PER_NODE = 1000
ACC_CLIENTS = 10
# Seconds of offered load per admission run, by mode.
ACC_SECONDS = {"quick": 5, "full": 10}
# A run whose offered rate strays further than this from 3000/s fails:
# the client did not hold the rate the allowance is judged against.
ACC_RATE_TOLERANCE = 0.05
# Idle time between the fleet forming (every node sees the others) and
# the load: the bucket refills in capacity / refill = 0.1 s, and sync
# rows reconcile 10 times.
ACC_SETTLE_S = 1.0
# Redis killed and restarted under the admission load (issue 22's third
# goal): the rows, by fleet mode, each with `fleet_fallback = "local"`
# (fail-open) and a Redis of its own, SIGKILLed and started again on the
# same port (empty: no snapshot, no append-only file).
OUT_STRICT = "fleet strict, Redis killed"
OUT_SYNC = "fleet sync 100 ms, Redis killed"
OUT_VARIANTS = [(OUT_STRICT, "strict"), (OUT_SYNC, "sync")]
OUT_ORDER = [name for name, _ in OUT_VARIANTS]
# Seconds of load, and when (seconds after the load starts) Redis is
# killed and started again, by bench mode.
OUT_TIMES = {"quick": (6, 2.0, 4.0), "full": (10, 3.0, 6.0)}
# `[state] sync_interval` in seconds (FLEET_SYNC_INTERVAL); the recovery
# goal is OUT_SYNC_INTERVALS of them.
FLEET_SYNC_INTERVAL_S = 0.1
OUT_SYNC_INTERVALS = 2
# The recovery rule: windows of OUT_WINDOW_S from Redis accepting
# connections again; the fleet is held to the limit from window k on when
# every run of windows k..j admits at most capacity + OUT_RATE_SLACK x
# refill x (j - k + 1) x OUT_WINDOW_S (a bucket of the limit's capacity,
# full at window k, refilled at 1.10 x the refill).
OUT_WINDOW_S = 0.1
OUT_RATE_SLACK = 1.10
# How often the driver asks the restarted Redis for PING (seconds): the
# precision of "Redis accepts connections again".
OUT_REDIS_POLL_S = 0.001


def redis_cmd(port, *args, timeout=2.0):
    """One Redis command on a fresh connection: its reply (simple and bulk
    strings as str, integers, arrays as lists, nil as None). Raises
    BenchError on an error reply or no answer."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    payload = f"*{len(parts)}\r\n".encode() + b"".join(
        f"${len(a)}\r\n".encode() + a + b"\r\n" for a in parts)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(payload)
            with s.makefile("rb") as f:
                return _resp_read(f)
    except (OSError, ValueError) as e:
        raise BenchError(f"Redis on port {port}, {' '.join(map(str, args[:2]))}: {e}")


def _resp_read(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ValueError("connection closed before the reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode("latin-1")
    if kind == b"-":
        raise ValueError(rest.decode("latin-1"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode("latin-1")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise ValueError(f"unexpected reply {line[:40]!r}")


def wait_redis(port, deadline, proc, poll=0.01, seen=None):
    """Polls (every `poll` seconds) until Redis answers PING; in `seen`,
    "at": the wall-clock time (s since the epoch) the PING that got PONG
    was sent."""
    while time.monotonic() < deadline:
        at = time.time()
        try:
            if redis_cmd(port, "PING", timeout=0.5) == "PONG":
                if seen is not None:
                    seen["at"] = at
                return True
        except BenchError:
            pass
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    return False


class RedisService:
    """A Redis of phase fleet (configs.redis_conf, on the load CPU) and its
    count of the Lua scripts it ran."""

    def __init__(self, server):
        self.server = server

    def info(self, section):
        text = redis_cmd(self.server.port, "INFO", section)
        out = {}
        for line in (text or "").splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v.strip()
        return out

    def answered(self):
        """Lua scripts Redis ran so far (EVALSHA and EVAL calls of `INFO
        commandstats`): one per fleet operation decided in Redis (strict),
        one per key reported and one heartbeat per round (the weir-fleet
        thread). Our own INFO reads are not among them."""
        n = 0
        for k, v in self.info("commandstats").items():
            if k in ("cmdstat_evalsha", "cmdstat_eval"):
                m = re.search(r"calls=(\d+)", v)
                n += int(m.group(1)) if m else 0
        return n


def start_redis(bench, name, port=None, poll=0.01):
    """A Redis (configs.redis_conf) on `port` (default: a free one), on the
    load CPU; its `ready_at` is when it first answered PING (wall clock,
    to within `poll` seconds)."""
    port = port or free_port()
    d = bench.dir(name)
    seen = {}
    srv = bench.start(name, "redis", configs.redis_conf(d, port), port, cpu=LOAD_CPU,
                      ready=lambda deadline, proc: wait_redis(port, deadline, proc, poll, seen))
    r = RedisService(srv)
    r.ready_at = seen.get("at")
    return r


def fleet_counters(admin_port):
    """Weir's fleet counters (its /metrics; the fleet section is there
    only with the Redis backend) and the plugin's trouble counters: traps,
    calls no instance took, and the plugin's own counters named `*error*`
    (rate-limit counts a take the host refused, and lets it through)."""
    s = prom_samples(admin_port)

    def one(name, label=None):
        return prom_sum(s, name, label)

    return {
        "fleet_section": any(n.startswith("weir_fleet_") for n, _, _ in s),
        "redis_up": one("weir_fleet_redis_up"), "nodes": one("weir_fleet_nodes"),
        "strict_redis": one("weir_fleet_strict_operations_total", 'outcome="redis"'),
        "strict_failed": one("weir_fleet_strict_operations_total", 'outcome="failed"'),
        "strict_timeout": one("weir_fleet_strict_operations_total", 'outcome="timeout"'),
        "strict_busy": one("weir_fleet_strict_operations_total", 'outcome="busy"'),
        "fallback_local": one("weir_fleet_fallbacks_total", 'fallback="local"'),
        "fallback_closed": one("weir_fleet_fallbacks_total", 'fallback="closed"'),
        "rounds_ok": one("weir_fleet_sync_rounds_total", 'outcome="ok"'),
        "rounds_failed": one("weir_fleet_sync_rounds_total", 'outcome="failed"'),
        "keys_synced": one("weir_fleet_sync_keys_total"),
        "outages": one("weir_fleet_redis_outages_total"),
        "plugin_traps": one("weir_plugin_traps_total"),
        "plugin_unavailable": one("weir_plugin_calls_total", 'outcome="unavailable"'),
        "plugin_errors": sum(v for n, labels, v in s if n == "weir_plugin_counted_total"
                             and re.search(r'name="[^"]*error', labels)),
    }


# Gauges among the counters: their value after, not a difference.
FLEET_GAUGES = ("fleet_section", "redis_up", "nodes")


def counters_delta(c0, c1):
    return {k: (c1[k] if k in FLEET_GAUGES else int(c1[k] - c0[k])) for k in c1}


def fmt_counters(d):
    """The counters that moved (+N) and the gauges (their value)."""
    return ", ".join(f"{k} {v:g}" if k in FLEET_GAUGES else f"{k} +{v}"
                     for k, v in d.items() if k != "fleet_section") or "no fleet counter moved"


def fleet_problems(mode, d, served=None, conns=0):
    """What a stretch's fleet counters (`counters_delta`) say is wrong:
    any fallback, any strict operation not decided in Redis, a failed sync
    round, Redis down at the end, plugin trouble; for strict, an operation
    decided in Redis for every request (`served`: at least one each, at
    most `conns` per wrk run more, left in flight)."""
    p = []
    if d["plugin_traps"] or d["plugin_unavailable"] or d["plugin_errors"]:
        p.append(f"plugin trouble: {d['plugin_traps']} traps, {d['plugin_unavailable']} calls "
                 f"no instance took, {d['plugin_errors']} counted errors")
    if mode is None:
        return p
    if not d["fleet_section"]:
        return p + ["/metrics has no weir_fleet_ section: the Redis backend is not on"]
    if d["redis_up"] != 1:
        p.append("weir_fleet_redis_up is 0")
    fb = d["fallback_local"] + d["fallback_closed"]
    if fb:
        p.append(f"{fb} operations answered by the fallback (local {d['fallback_local']}, "
                 f"closed {d['fallback_closed']})")
    bad = {k: d[k] for k in ("strict_failed", "strict_timeout", "strict_busy") if d[k]}
    if bad:
        p.append(f"strict operations not decided in Redis: {bad}")
    if d["rounds_failed"] or d["outages"]:
        p.append(f"{d['rounds_failed']} failed rounds, {d['outages']} outages")
    if mode == "strict" and served is not None and \
            not served <= d["strict_redis"] <= served + 2 * conns:
        p.append(f"{d['strict_redis']} strict operations decided in Redis for {served} requests")
    if mode == "sync" and d["strict_redis"]:
        p.append(f"{d['strict_redis']} strict operations in sync mode")
    return p


class FleetTarget:
    """An overhead row of phase fleet: its Weir, the fleet mode (None:
    local), the admin port whose /metrics the checks read, its Redis (its
    own, so that Redis's scripts and CPU are this row's alone), and the
    plugin's folder and configuration, which the callgrind run serves
    again."""

    def __init__(self, server, mode, admin_port, redis, plugin_dir, config):
        self.server, self.mode, self.admin_port = server, mode, admin_port
        self.redis, self.plugin_dir, self.config = redis, plugin_dir, config


def fleet_prefix(name):
    return "bench-" + re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def wait_fleet(admin_ports, nodes, limit_s=10.0):
    """Waits until every gateway's last round reached Redis and saw
    `nodes` gateways; the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + limit_s
    seen = None
    while True:
        try:
            seen = [fleet_counters(p) for p in admin_ports]
        except BenchError:
            seen = None
        if seen and all(c["fleet_section"] and c["redis_up"] == 1 and c["nodes"] == nodes
                        for c in seen):
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            what = ([(c["redis_up"], c["nodes"]) for c in seen] if seen
                    else "no /metrics")
            raise BenchError(f"the fleet did not form within {limit_s}s: (redis_up, nodes) "
                             f"per gateway {what}, expected (1, {nodes})")
        time.sleep(0.05)


def fleet_check(t):
    """Shows that a row does what it is measured doing: the upstream's
    answer with the plugin's RateLimit-Limit; for the fleet rows Redis is
    up for the gateway, and FLEET_PROBES requests make exactly
    FLEET_PROBES strict operations decided in Redis (strict) or sync
    rounds report the bucket (sync), with no fallback; the local row runs
    without the fleet section. Returns what it saw; raises on the first
    mismatch."""
    srv = t.server
    status, head, body = http_get(srv.port, whole=True)
    if status != 200 or body != configs.UPSTREAM_BODY.encode():
        raise BenchError(f"answered {status} {body[:80]!r}, not the upstream's body")
    limit = re.search(r"\r\nratelimit-limit:\s*(\S+)", head)
    if not limit:
        raise BenchError("no ratelimit-limit header in the answer: the plugin did not run")
    seen = {"target": srv.name, "ratelimit_limit": limit.group(1)}
    if t.mode:
        wait_fleet([t.admin_port], 1)
    c0 = fleet_counters(t.admin_port)
    s0 = t.redis.answered() if t.redis else None
    for _ in range(FLEET_PROBES):
        if http_get(srv.port) != 200:
            raise BenchError("a probe request was not answered 200")
    if t.mode == "sync":
        # The next rounds report the bucket.
        deadline = time.monotonic() + 2.0
        while fleet_counters(t.admin_port)["keys_synced"] == c0["keys_synced"] and \
                time.monotonic() < deadline:
            time.sleep(0.05)
    d = counters_delta(c0, fleet_counters(t.admin_port))
    problems = fleet_problems(t.mode, d, FLEET_PROBES, 0)
    if t.mode is None and d["fleet_section"]:
        problems.append("the local row has a weir_fleet_ section: a Redis backend is on")
    if t.mode == "sync" and not d["keys_synced"]:
        problems.append("no key reported to Redis within 2 s of the probes")
    if problems:
        raise BenchError("; ".join(problems))
    seen["counters"] = {k: v for k, v in d.items() if v and k != "fleet_section"}
    if t.redis:
        seen["redis_scripts"] = t.redis.answered() - s0
        if t.mode == "strict" and seen["redis_scripts"] < FLEET_PROBES:
            raise BenchError(f"Redis ran {seen['redis_scripts']} scripts for {FLEET_PROBES} "
                             "strict requests")
    return seen


def fleet_measure(bench, t, conns):
    """One CPU run (bench.measure, OBSERVE_WARMUP_S of warm-up) with Redis's
    scripts and CPU; the fleet counters read before the warm-up and after
    the run, outside the CPU figures, must show nothing wrong."""
    c0 = fleet_counters(t.admin_port)
    run = bench.measure(t.server, warmup=OBSERVE_WARMUP_S, redis=t.redis)
    if run["status"] != "ok":
        return run
    d = counters_delta(c0, fleet_counters(t.admin_port))
    run["fleet_counters"] = {k: v for k, v in d.items() if v and k != "fleet_section"}
    served = run["warmup"]["requests"] + run["requests"]
    problems = fleet_problems(t.mode, d, served, conns)
    if problems:
        run["status"] = "failed: " + "; ".join(problems)
    return run


def fleet_phase(bench, results, log):
    """Scenario 13 (issue 22): the rate-limit plugin with its bucket kept
    in this gateway, fleet-wide in sync mode and in strict mode through
    Redis, a limit nothing reaches: CPU per request over the rounds, then
    instructions per request under callgrind; then admission accuracy:
    three gateways sharing a limit of 1000/s under 3000 requests/s; and
    the same load with Redis killed and restarted (fail-open)."""
    m = bench.mode
    out = results["fleet"]
    up = bench.upstream
    targets = {}
    cache_dir = bench.dir("fleet-plugin-cache")
    wasm = configs.find_plugin(REPO, ["rate_limit", "rate-limit"])
    if wasm is None:
        reason = f"skipped: plugin runtime not available (no {configs.PLUGIN_DIR}/rate_limit.wasm)"
        for name in FLEET_ORDER:
            results["skipped"].append({"group": "fleet", "target": name, "reason": reason})
        out["accuracy_skipped"] = reason
        log(f"  fleet: {reason}")
        return
    redises = []
    try:
        for name, mode in FLEET_VARIANTS:
            dirname = "fleet-" + re.sub(r"[^a-z0-9]+", "-", name)
            plugin_dir = plugin_folder(bench, dirname, "rate-limit", wasm)
            port, admin_port = free_port(), free_port()
            config = configs.rate_limit_fleet_config(configs.FLEET_HIGH_LIMIT, mode is not None)
            # Checked with a port for Redis before starting one.
            conf = configs.weir_fleet_config(port, up.port, plugin_dir, cache_dir, config,
                                             admin_port, free_port() if mode else None, mode,
                                             FLEET_SYNC_INTERVAL, fleet_prefix(name))
            try:
                weir_check(bench.dir(dirname), conf)
            except BenchError as e:
                reason = f"skipped: weir check refused the configuration: {refusal_line(e)}"
                results["skipped"].append({"group": "fleet", "target": name, "reason": reason})
                log(f"  {name}: {reason}")
                continue
            redis = None
            srv = None
            try:
                if mode:
                    redis = start_redis(bench, dirname + "-redis")
                    redises.append(redis)
                    conf = configs.weir_fleet_config(port, up.port, plugin_dir, cache_dir, config,
                                                     admin_port, redis.server.port, mode,
                                                     FLEET_SYNC_INTERVAL, fleet_prefix(name))
                srv = bench.start(dirname, "weir", conf, port)
                wait_metrics(admin_port)
            except BenchError as e:
                if srv is not None:
                    bench.procs.stop(srv.proc)
                reason = f"FAILED to start, not measured: {e}"
                results["skipped"].append({"group": "fleet", "target": name, "reason": reason})
                log(f"  {name}: {reason}")
                continue
            srv.name = name
            targets[name] = FleetTarget(srv, mode, admin_port, redis, plugin_dir, config)

        for name, t in list(targets.items()):
            try:
                seen = fleet_check(t)
            except BenchError as e:
                reason = f"FAILED set-up check, not measured: {e}"
                results["skipped"].append({"group": "fleet", "target": name, "reason": reason})
                log(f"  {name}: {reason}\n{tail(t.server.log)}")
                bench.procs.stop(targets.pop(name).server.proc)
                continue
            out["checks"].append(seen)
            log(f"  {name}: set-up check ok; RateLimit-Limit {seen['ratelimit_limit']}; "
                f"for {FLEET_PROBES} requests: {fmt_counters(seen['counters'])}"
                + (f", Redis ran {seen['redis_scripts']} scripts" if t.redis else ""))

        plan = [(name, targets[name]) for name in FLEET_ORDER if name in targets]
        for rnd in range(1, m["rounds"] + 1):
            for name, t in plan:
                t0 = time.monotonic()
                try:
                    run = fleet_measure(bench, t, m["conns"])
                except BenchError as e:
                    run = {"status": f"failed: {e}"}
                run.update(round=rnd, group="fleet", target=name)
                results["runs"].append(run)
                extra = ""
                if run.get("proxy_user_cpu_us_per_req") is not None:
                    extra = f"  (user {run['proxy_user_cpu_us_per_req']:.2f} us/req)"
                if run.get("redis_cmds") is not None:
                    extra += (f"  Redis {run['redis_cmds']} scripts, "
                              f"{run['redis_cpu_us_per_req']:.2f} us/req")
                log(f"  round {rnd} {name:<30} {fmt_run(run)}{extra}  "
                    f"({time.monotonic() - t0:.1f}s)")
                if run["status"] != "ok":
                    log(f"  {name} log:\n{tail(t.server.log)}")
    except BenchError as e:
        results["skipped"].append({"group": "fleet", "target": "all", "reason": f"FAILED: {e}"})
        log(f"  {e}")
    finally:
        for t in targets.values():
            bench.procs.stop(t.server.proc)
    try:
        fleet_callgrind(bench, out, log, list(targets.items()), cache_dir)
    finally:
        for r in redises:
            bench.procs.stop(r.server.proc)
    fleet_accuracy(bench, results, log, wasm, cache_dir)


def fleet_callgrind(bench, out, log, fleet_targets, cache_dir):
    """User-space instructions per request of each overhead row that passed
    its check, each in a fresh Weir under callgrind (as auth_callgrind:
    the plugin with `max_instances = 1`, valgrind under no_auxv.py), with
    the row's own Redis; the fleet counters and Redis's scripts over the
    measured stretch are checked as in the CPU runs."""
    missing = [t for t in ("valgrind", "callgrind_control") if shutil.which(t) is None]
    if missing:
        out["callgrind_skipped"] = (f"not measured: {', '.join(missing)} not found "
                                    "(run.sh installs valgrind)")
        log(f"  callgrind: {out['callgrind_skipped']}")
        return
    warmup, requests = CALLGRIND_REQUESTS[bench.mode["name"]]
    up = bench.upstream
    for name, t in fleet_targets:
        port, admin_port = free_port(), free_port()
        cg_name = "fleet-callgrind-" + re.sub(r"[^a-z0-9]+", "-", name)
        d = bench.dir(cg_name)
        conf = configs.weir_fleet_config(port, up.port, t.plugin_dir, cache_dir, t.config,
                                         admin_port, t.redis.server.port if t.redis else None,
                                         t.mode, FLEET_SYNC_INTERVAL, fleet_prefix(name),
                                         max_instances=1)
        srv = None
        t0 = time.monotonic()
        try:
            weir_check(d, conf)
            out_file = os.path.join(d, "callgrind.out")
            srv = callgrind_start(bench, cg_name, conf, port, out_file, plugins=True)
            wait_metrics(admin_port, limit_s=60.0)
            if t.mode:
                wait_fleet([admin_port], 1, limit_s=30.0)
            c0 = fleet_counters(admin_port)
            rec = callgrind_measure(bench, srv, out_file, requests, warmup, auth=t.redis)
            if t.redis and "auth_calls" in rec:
                rec["redis_cmds"] = rec.pop("auth_calls")
            if rec["status"] == "ok":
                dlt = counters_delta(c0, fleet_counters(admin_port))
                rec["fleet_counters"] = {k: v for k, v in dlt.items()
                                         if v and k != "fleet_section"}
                problems = fleet_problems(t.mode, dlt, rec["warmup_requests"] + rec["requests"],
                                          CALLGRIND_CONNS)
                if t.mode == "strict" and rec.get("redis_cmds", 0) < rec["requests"]:
                    problems.append(f"Redis ran {rec['redis_cmds']} scripts for "
                                    f"{rec['requests']} strict requests")
                if problems:
                    rec["status"] = "failed: " + "; ".join(problems)
        except BenchError as e:
            rec = {"status": f"failed: {e}"}
        finally:
            if srv is not None:
                bench.procs.stop(srv.proc, grace=2.0)
        rec["target"] = name
        out["callgrind"].append(rec)
        if rec["status"] == "ok":
            log(f"  callgrind {name:<30} {rec['ir_per_req']:>9,.0f} instructions/request "
                f"({rec['requests']} requests"
                + (f", Redis ran {rec['redis_cmds']} scripts" if "redis_cmds" in rec else "")
                + f", {rec['seconds']:.1f}s)")
        else:
            log(f"  callgrind {name:<30} {rec['status'][:300]}")
            if srv is not None:
                log(tail(srv.log))
        log(f"  callgrind {name}: {time.monotonic() - t0:.1f}s")


def h2load_log(path):
    """(start µs since the epoch, status) of each request h2load logged
    with `--log-file` (status -1: a failed stream)."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                fields = line.split("\t")
                if len(fields) >= 3:
                    rows.append((int(fields[0]), int(fields[1]), int(fields[2])))
    except (OSError, ValueError):
        pass
    return rows


def per_second(starts, first):
    """Requests by second of their start, from `first` (µs since the
    epoch): the admitted over time (the last second may be partial)."""
    out = []
    for st in starts:
        i = (st - first) // 1_000_000
        out.extend([0] * (i + 1 - len(out)))
        out[i] += 1
    return out


def pct_nearest(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    rank = -(-len(xs) * p // 100)
    return float(xs[min(len(xs) - 1, max(0, int(rank) - 1))])


def outage_problems(mode, d):
    """What a gateway's counters over a Redis-killed run (`counters_delta`)
    say is wrong: plugin trouble; the kill not noticed (no outage counted)
    or no operation answered by the local fallback; any answered by the
    closed one; Redis not reachable again or the fleet not whole at the
    end; a strict operation in sync mode."""
    p = []
    if d["plugin_traps"] or d["plugin_unavailable"] or d["plugin_errors"]:
        p.append(f"plugin trouble: {d['plugin_traps']} traps, {d['plugin_unavailable']} calls "
                 f"no instance took, {d['plugin_errors']} counted errors")
    if not d["fleet_section"]:
        return p + ["/metrics has no weir_fleet_ section: the Redis backend is not on"]
    if d["outages"] < 1:
        p.append("weir_fleet_redis_outages_total did not move: the kill went unnoticed")
    if d["fallback_local"] < 1:
        p.append('weir_fleet_fallbacks_total{fallback="local"} did not move')
    if d["fallback_closed"]:
        p.append(f"{d['fallback_closed']} operations answered by the closed fallback")
    if d["redis_up"] != 1:
        p.append("weir_fleet_redis_up is 0 at the end: Redis not reachable again")
    if d["nodes"] != ACC_NODES:
        p.append(f"weir_fleet_nodes is {d['nodes']:g} at the end, not {ACC_NODES}")
    if mode == "sync" and d["strict_redis"]:
        p.append(f"{d['strict_redis']} strict operations in sync mode")
    return p


def fleet_log_events(path):
    """The `fleet state:` lines of a gateway's log: (µs since the epoch,
    "down" for `Redis cannot be reached`, "up" for `Redis reachable`)."""
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = re.match(r"^(\d{4}-\d\d-\d\dT\S+Z)\s+\w+\s.*fleet state: Redis "
                             r"(reachable|cannot be reached)", line)
                if m:
                    try:
                        t = datetime.datetime.fromisoformat(m.group(1)).timestamp()
                    except ValueError:
                        continue
                    out.append((int(t * 1e6), "up" if m.group(2) == "reachable" else "down"))
    except OSError:
        pass
    return out


def recovery_windows(admitted_starts, t_rec_us, t_end_us, limit):
    """Admission after Redis accepted connections again at `t_rec_us`: the
    admitted (start times, µs) in each whole OUT_WINDOW_S window from
    `t_rec_us` up to `t_end_us` (the last request's start; the partial
    last window is left out), and the first window k from which the fleet
    is held to the limit: for every j >= k, windows k..j together admit at
    most capacity + OUT_RATE_SLACK x refill x (j - k + 1) x OUT_WINDOW_S
    (None: no such window)."""
    w_us = int(OUT_WINDOW_S * 1e6)
    n = max(0, (t_end_us - t_rec_us) // w_us)
    wins = [0] * n
    for st in admitted_starts:
        if st >= t_rec_us:
            i = (st - t_rec_us) // w_us
            if i < n:
                wins[i] += 1
    per = OUT_RATE_SLACK * limit["refill_per_second"] * OUT_WINDOW_S
    for k in range(n):
        total = 0
        if all((total := total + wins[j]) <= limit["capacity"] + per * (j - k + 1)
               for j in range(k, n)):
            return wins, k
    return wins, None


def accuracy_run(bench, name, mode, redis, rnd, wasm, cache_dir, seconds, log, outage=None):
    """One admission run: ACC_NODES fresh gateways (pinned to the proxy
    CPU, each its own process and port) with the rate-limit plugin at the
    fleet limit (`mode`: through `redis`, under a key prefix of this run's
    own; None: each gateway alone), the fleet formed (each gateway saw the
    others in Redis), ACC_SETTLE_S idle, then one h2load per gateway
    (`--h1 --rps`) offering ACC_RPS_PER_NODE requests a second for
    `seconds`, all at once. Admitted: the 2xx; the limit's allowance:
    capacity + refill x the time from the first request's start to the
    last's (over all three logs).

    With `outage` (seconds after the load starts: (kill, restart)), the
    run has a Redis of its own (`redis` is not used), SIGKILLed at the
    first and started again on the same port at the second: the record
    has the failed requests (anything but 2xx or 429), the admitted while
    Redis was down against the local fallback's allowance, the admitted
    per OUT_WINDOW_S window after Redis accepted connections again and the
    recovery (recovery_windows), each gateway's counters and the times its
    log noticed the outage and the recovery."""
    up = bench.upstream
    limit = configs.FLEET_LIMIT
    config = configs.rate_limit_fleet_config(limit, mode is not None)
    tag = ("out" if outage else "acc") + f"-r{rnd}-{mode or 'local'}"
    prefix = f"bench-{tag}"
    nodes = []
    rec = {"target": name, "round": rnd, "mode": mode, "seconds_asked": seconds,
           "capacity": limit["capacity"], "refill_per_second": limit["refill_per_second"]}
    procs = []
    own_redis = None
    try:
        if outage:
            redis = own_redis = start_redis(bench, f"fleet-{tag}-redis")
        for i in range(ACC_NODES):
            dirname = f"fleet-{tag}-n{i + 1}"
            plugin_dir = plugin_folder(bench, dirname, "rate-limit", wasm)
            port, admin_port = free_port(), free_port()
            conf = configs.weir_fleet_config(port, up.port, plugin_dir, cache_dir, config,
                                             admin_port, redis.server.port if mode else None,
                                             mode, FLEET_SYNC_INTERVAL, prefix)
            try:
                weir_check(bench.dir(dirname), conf)
            except BenchError as e:
                rec["status"] = ("skipped: weir check refused the configuration: "
                                 f"{refusal_line(e)}")
                return rec
            srv = bench.start(dirname, "weir", conf, port)
            srv.name = f"{name} node {i + 1}"
            nodes.append((srv, admin_port))
            wait_metrics(admin_port)
        if mode:
            rec["fleet_formed_s"] = round(wait_fleet([a for _, a in nodes], ACC_NODES), 3)
        time.sleep(ACC_SETTLE_S)
        c0 = [fleet_counters(a) for _, a in nodes]
        logs = [os.path.join(bench.workdir, f"acc-h2load-{i + 1}.log") for i in range(ACC_NODES)]
        for f in logs:
            if os.path.exists(f):
                os.unlink(f)
        argv = ["h2load", "--h1", "-t1", f"-c{ACC_CLIENTS}",
                f"--rps={ACC_RPS_PER_NODE // ACC_CLIENTS}", "-D", str(seconds)]
        t0 = time.monotonic()
        for (srv, _), f in zip(nodes, logs):
            # The driver runs on LOAD_CPU; h2load inherits it.
            procs.append(subprocess.Popen(argv + ["--log-file", f, f"http://127.0.0.1:{srv.port}/"],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, start_new_session=True))
        if outage:
            kill_at, restart_at = outage
            time.sleep(max(0.0, t0 + kill_at - time.monotonic()))
            p = redis.server.proc
            t_kill = time.time()
            rec["redis_killed_after_s"] = round(time.monotonic() - t0, 3)
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)
            bench.procs.stop(p)
            own_redis = None
            time.sleep(max(0.0, t0 + restart_at - time.monotonic()))
            rec["redis_restarted_after_s"] = round(time.monotonic() - t0, 3)
            redis = own_redis = start_redis(bench, f"fleet-{tag}-redis", port=redis.server.port,
                                            poll=OUT_REDIS_POLL_S)
            t_rec = redis.ready_at
            rec["redis_down_s"] = round(t_rec - t_kill, 4)
        summaries = []
        for p in procs:
            try:
                stdout, stderr = p.communicate(timeout=max(seconds + 30 - (time.monotonic() - t0),
                                                           1))
            except subprocess.TimeoutExpired:
                raise BenchError(f"h2load did not finish within {seconds + 30}s")
            h = parse_h2load(stdout)
            if p.returncode != 0 or h is None:
                raise BenchError(f"h2load failed (exit {p.returncode}): {stdout[-600:]} "
                                 f"{stderr[-600:]}")
            summaries.append(h)
        c1 = [fleet_counters(a) for _, a in nodes]
        per_node = []
        starts, lat = [], []
        statuses = {}
        logged = [h2load_log(f) for f in logs]
        first = min((r[0] for rows in logged for r in rows), default=0)
        for (srv, _), rows, h, a, b in zip(nodes, logged, summaries, c0, c1):
            s = [r[0] for r in rows]
            adm = sum(1 for r in rows if 200 <= r[1] < 300)
            d = counters_delta(a, b)
            node = {"requests": len(rows), "admitted": adm,
                    "refused_429": sum(1 for r in rows if r[1] == 429),
                    "offered_rps": (len(rows) - 1) / ((max(s) - min(s)) / 1e6)
                    if len(s) > 1 and max(s) > min(s) else None,
                    "admitted_per_s": per_second([r[0] for r in rows if 200 <= r[1] < 300],
                                                 first),
                    "h2load": {k: h[k] for k in ("seconds", "h2load_rps", "total", "succeeded",
                                                 "failed", "errored", "timeout", "status")},
                    "fleet_counters": {k: v for k, v in d.items()
                                       if v and k != "fleet_section"},
                    "problems": (outage_problems(mode, d) if outage else
                                 fleet_problems(mode, d, len(rows), ACC_CLIENTS))}
            if outage:
                # h2load's `failed` is every request not answered 2xx or
                # 3xx (errors, timeouts, lost streams and connections
                # among them): less the 429s, plus any 3xx, it is every
                # request answered neither 2xx nor 429.
                node["failed"] = (h["failed"] - node["refused_429"]
                                  + sum(1 for r in rows if 300 <= r[1] < 400))
                node["outages"] = d["outages"]
                node["fallback_local"] = d["fallback_local"]
                node["log_events"] = fleet_log_events(srv.log)
            if h["total"] != len(rows):
                node["problems"].append(f"h2load counted {h['total']} requests, logged "
                                        f"{len(rows)}")
            if srv.proc.poll() is not None:
                node["problems"].append(f"{srv.name} exited during the run "
                                        f"(exit {srv.proc.returncode})")
            for r in rows:
                statuses[str(r[1])] = statuses.get(str(r[1]), 0) + 1
            starts += s
            lat += [r[2] for r in rows if r[1] != -1]
            per_node.append(node)
        n = len(starts)
        elapsed = (max(starts) - min(starts)) / 1e6 if n > 1 else 0.0
        admitted = sum(x["admitted"] for x in per_node)
        allowance = limit["capacity"] + limit["refill_per_second"] * elapsed
        admitted_starts = sorted(r[0] for rows in logged for r in rows if 200 <= r[1] < 300)
        rec.update(nodes=per_node, requests=n, admitted=admitted,
                   admitted_per_s=per_second(admitted_starts, first),
                   refused_429=sum(x["refused_429"] for x in per_node), statuses=statuses,
                   elapsed_s=round(elapsed, 4), offered_rps=(n - 1) / elapsed if elapsed else None,
                   allowance=allowance, ratio=admitted / allowance if allowance else None,
                   p50_us=pct_nearest(lat, 50), p99_us=pct_nearest(lat, 99))
        problems = []
        target = ACC_NODES * ACC_RPS_PER_NODE
        if not rec["offered_rps"] or abs(rec["offered_rps"] / target - 1) > ACC_RATE_TOLERANCE:
            problems.append(f"offered {rec['offered_rps'] or 0:.0f} requests/s, not {target} "
                            f"(within {ACC_RATE_TOLERANCE:.0%})")
        other = {k: v for k, v in statuses.items() if not (k.startswith("2") or k == "429")}
        if other and not outage:
            problems.append(f"answers neither 2xx nor 429 (status: count; -1 is a failed "
                            f"stream): {other}")
        if outage and n:
            # The fallback's allowance while Redis was down: each gateway
            # its own bucket of capacity / N and refill / N, rounded up.
            k_us, r_us = int(t_kill * 1e6), int(t_rec * 1e6)
            share_cap = -(-limit["capacity"] // ACC_NODES)
            share_refill = -(-limit["refill_per_second"] // ACC_NODES)
            down_s = (r_us - k_us) / 1e6
            while_down = sum(1 for st in admitted_starts if k_us <= st < r_us)
            fb_allowance = ACC_NODES * (share_cap + share_refill * down_s)
            wins, k = recovery_windows(admitted_starts, r_us, max(starts), limit)
            rec.update(
                failed=sum(x["failed"] for x in per_node),
                h2load_errored=sum(x["h2load"]["errored"] for x in per_node),
                h2load_timeout=sum(x["h2load"]["timeout"] for x in per_node),
                other_statuses=other,
                redis_killed_at_us=k_us, redis_ready_at_us=r_us,
                redis_killed_after_first_s=round((k_us - first) / 1e6, 3),
                admitted_while_down=while_down, fallback_share=[share_cap, share_refill],
                fallback_allowance=fb_allowance,
                while_down_ratio=while_down / fb_allowance if fb_allowance else None,
                windows_after_recovery=wins, recovery_window=k,
                recovery_ms=None if k is None else round(k * OUT_WINDOW_S * 1000),
                # Each gateway's log: the outage noticed (ms after the kill)
                # and Redis reachable again (ms after it accepted again).
                noticed_ms=[next((round((t - k_us) / 1000) for t, e in x["log_events"]
                                  if e == "down" and t >= k_us - 1000), None)
                            for x in per_node],
                reachable_ms=[next((round((t - r_us) / 1000) for t, e in x["log_events"]
                                    if e == "up" and t >= k_us), None) for x in per_node])
        for i, x in enumerate(per_node):
            problems += [f"node {i + 1}: {p}" for p in x["problems"]]
        rec["status"] = "failed: " + "; ".join(problems) if problems else "ok"
        if problems or rec.get("failed"):
            for srv, _ in nodes:
                rec.setdefault("logs", {})[srv.name] = tail(srv.log, 30)
    except BenchError as e:
        rec["status"] = f"failed: {e}"
        for srv, _ in nodes:
            rec.setdefault("logs", {})[srv.name] = tail(srv.log, 30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for srv, _ in nodes:
            bench.procs.stop(srv.proc)
        if own_redis is not None:
            bench.procs.stop(own_redis.server.proc)
    return rec


def fleet_accuracy(bench, results, log, wasm, cache_dir):
    """The admission rows, one after another each round, against one Redis
    (each run its own key prefix and fresh gateways); then, each round,
    the Redis-killed rows, each against a Redis of its own."""
    m = bench.mode
    out = results["fleet"]
    seconds = ACC_SECONDS[m["name"]]
    out_s, kill_at, restart_at = OUT_TIMES[m["name"]]
    if shutil.which("h2load") is None:
        out["accuracy_skipped"] = "not measured: h2load not found (run.sh installs it)"
        log(f"  admission: {out['accuracy_skipped']}")
        return
    redis = None
    try:
        redis = start_redis(bench, "fleet-acc-redis")
        for rnd in range(1, m["rounds"] + 1):
            for name, mode, _ in ACC_VARIANTS:
                t0 = time.monotonic()
                rec = accuracy_run(bench, name, mode, redis, rnd, wasm, cache_dir, seconds, log)
                out["accuracy"].append(rec)
                if rec.get("ratio") is not None:
                    log(f"  round {rnd} {name:<28} admitted {rec['admitted']} of "
                        f"{rec['requests']} ({rec['offered_rps']:.0f} req/s offered over "
                        f"{rec['elapsed_s']:.2f}s), limit {rec['allowance']:.0f}: "
                        f"{rec['ratio']:.3f}x  {rec['status'][:400]}  "
                        f"({time.monotonic() - t0:.1f}s)")
                else:
                    log(f"  round {rnd} {name:<28} {rec['status'][:600]}")
                if rec["status"] != "ok" and rec.get("logs"):
                    for who, text in rec["logs"].items():
                        log(f"  {who} log:\n{text}")
            for name, mode in OUT_VARIANTS:
                t0 = time.monotonic()
                rec = accuracy_run(bench, name, mode, None, rnd, wasm, cache_dir, out_s, log,
                                   outage=(kill_at, restart_at))
                out["outage"].append(rec)
                if rec.get("admitted_while_down") is not None:
                    rmsg = ("never" if rec["recovery_ms"] is None
                            else f"{rec['recovery_ms']} ms")
                    log(f"  round {rnd} {name:<32} {rec['requests']} requests, "
                        f"{rec['failed']} failed (errored {rec['h2load_errored']}, timeout "
                        f"{rec['h2load_timeout']}); Redis down {rec['redis_down_s']:.2f}s: "
                        f"admitted {rec['admitted_while_down']} against the fallback's "
                        f"{rec['fallback_allowance']:.0f}; held to the limit again {rmsg} "
                        f"after Redis accepted; outages "
                        f"{'/'.join(str(x['outages']) for x in rec['nodes'])}, local fallbacks "
                        f"{'/'.join(str(x['fallback_local']) for x in rec['nodes'])}  "
                        f"{rec['status'][:400]}  ({time.monotonic() - t0:.1f}s)")
                else:
                    log(f"  round {rnd} {name:<32} {rec['status'][:600]}")
                if (rec["status"] != "ok" or rec.get("failed")) and rec.get("logs"):
                    for who, text in rec["logs"].items():
                        log(f"  {who} log:\n{text}")
    except BenchError as e:
        out["accuracy_skipped"] = f"FAILED: {e}"
        log(f"  admission: {e}")
    finally:
        if redis is not None:
            bench.procs.stop(redis.server.proc)


# --------------------------------------------------------------------------
# Summary and goals
# --------------------------------------------------------------------------

def spread(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs),
            "values": xs}


BASELINE = {"plain": ("plain", "nginx"), "plugin": ("plain", "nginx"), "close": ("close", "nginx"),
            "balancer": ("plain", "nginx"), "tls": ("tls", "nginx"),
            "tls-new": ("tls-new", "nginx"), "tls-resumed": ("tls-resumed", "nginx"),
            "h2": ("h2", "nginx"), "grpc": ("grpc", "nginx"), "observe": ("observe", "nginx"),
            "auth": ("auth", AUTH_NGINX), "fleet": ("fleet", FLEET_LOCAL)}


def summarize(results):
    runs = [r for r in results["runs"] if r["status"] == "ok"]

    def get(group, target, rnd):
        return next((r for r in runs if r["group"] == group and r["target"] == target
                     and r["round"] == rnd), None)

    rows = []
    seen = []
    for r in results["runs"]:
        key = (r["group"], r["target"])
        if key not in seen:
            seen.append(key)
    for group, target in seen:
        mine = [r for r in runs if r["group"] == group and r["target"] == target]
        all_runs = [r for r in results["runs"] if r["group"] == group and r["target"] == target]
        row = {"group": group, "target": target, "ok_runs": len(mine), "runs": len(all_runs),
               "failures": [r["status"] for r in all_runs if r["status"] != "ok"]}
        for f in ("rps", "p50_us", "p99_us", "proxy_cpu_us_per_req", "upstream_cpu_us_per_req",
                  "handshakes_per_cpu_s", "upstream_conns", "proxy_busy",
                  "proxy_user_cpu_us_per_req", "proxy_sys_cpu_us_per_req",
                  "auth_calls_per_req", "auth_cpu_us_per_req", "redis_cmds_per_req",
                  "redis_cpu_us_per_req"):
            row[f] = spread([r.get(f) for r in mine])
        def paired(base, f="proxy_cpu_us_per_req", op=lambda a, b: a / b):
            """`op` of this row's figure and `base`'s, round by round."""
            out = []
            for r in mine:
                b = get(*base, r["round"])
                if b and b[f] and r[f] is not None:
                    out.append(op(r[f], b[f]))
            return spread(out)

        for f in ("rps", "proxy_cpu_us_per_req", "p99_us"):
            row[f"{f}_vs_nginx"] = paired(BASELINE[group], f)
        # Cost of a plugin over plain Weir in the same round.
        if group == "plugin" and target.startswith("weir+"):
            row["cpu_delta_vs_weir_plain_us"] = paired(("plain", "weir"), op=lambda a, b: a - b)
        # The api-key goal compares it with the Lua check of the same round
        # (the ratio above is to plain nginx).
        if target == "weir+api-key":
            row["cpu_vs_lua_check"] = paired(("plugin", "nginx+lua-api-key"))
        # A policy's cost against round_robin over the same endpoints.
        if group == "balancer":
            row["cpu_vs_round_robin"] = paired(("balancer", "weir-2ep-round_robin"))
        # HTTP/2 and gRPC: against HAProxy too, and against the better
        # (lower CPU per request) of HAProxy and nginx in the same round.
        if group in ("h2", "grpc"):
            row["proxy_cpu_us_per_req_vs_haproxy"] = paired((group, "haproxy"))
            best = []
            for r in mine:
                others = [b for b in (get(group, "nginx", r["round"]),
                                      get(group, "haproxy", r["round"]))
                          if b and b["proxy_cpu_us_per_req"]]
                if others and r["proxy_cpu_us_per_req"] is not None:
                    b = min(others, key=lambda b: b["proxy_cpu_us_per_req"])
                    best.append((r["proxy_cpu_us_per_req"] / b["proxy_cpu_us_per_req"],
                                 b["target"]))
            row["proxy_cpu_us_per_req_vs_best"] = spread([v for v, _ in best])
            row["best_by_round"] = [t for _, t in best]
        # Observability: each Weir variant against Weir with all of it off,
        # nginx's access log against nginx without, same round.
        if group == "observe":
            base = observe_base(target)
            if target not in (base, "weir off", "nginx"):
                row["cpu_delta_us"] = paired(("observe", base), op=lambda a, b: a - b)
                row["delta_base"] = base
        # Forward authentication: the cached decision against api-key, a
        # call on every request against the cached decision, same round.
        if group == "auth" and target in AUTH_DELTA_BASE:
            base = AUTH_DELTA_BASE[target]
            row["cpu_delta_us"] = paired(("auth", base), op=lambda a, b: a - b)
            row["delta_base"] = base
        # Fleet state: sync and strict against the local bucket, same round.
        if group == "fleet" and target in FLEET_DELTA_BASE:
            base = FLEET_DELTA_BASE[target]
            row["cpu_delta_us"] = paired(("fleet", base), op=lambda a, b: a - b)
            row["delta_base"] = base
        # A resumed handshake's cost against a full one, same proxy and round.
        if group == "tls-resumed":
            row["cpu_vs_full_handshake"] = paired(("tls-new", target))
        # Handshakes as the proxy counted them (Weir, HAProxy) and as
        # s_time saw them, over the measured runs.
        counted = [r["handshakes"] for r in mine if r.get("handshakes")]
        if counted:
            row["handshakes_counted"] = {k: sum(h[k] for h in counted) for k in counted[0]}
        if any("s_time" in r for r in mine):
            row["client_saw"] = {k: sum(r["s_time"][k] for r in mine)
                                 for k in ("full", "resumed")}
        rows.append(row)
    for s in results["skipped"]:
        rows.append({"group": s["group"], "target": s["target"], "skipped": s["reason"]})

    def idle_summary(recs):
        idle = []
        for kind in ("weir", "nginx", "haproxy"):
            mine = [r for r in recs if r["target"] == kind and r["status"] == "ok"]
            failures = [r["status"] for r in recs if r["target"] == kind and r["status"] != "ok"]
            ratios = []
            for r in mine:
                b = next((x for x in recs if x["target"] == "nginx"
                          and x["round"] == r["round"] and x["status"] == "ok"), None)
                if b and b["growth_kib"] > 0:
                    ratios.append(r["growth_kib"] / b["growth_kib"])
            idle.append({"target": kind, "growth_kib": spread([r["growth_kib"] for r in mine]),
                         "bytes_per_conn": spread([r["bytes_per_conn"] for r in mine]),
                         "rss_before_kib": spread([r["rss_before_kib"] for r in mine]),
                         "rss_after_kib": spread([r["rss_after_kib"] for r in mine]),
                         "growth_vs_nginx": spread(ratios), "failures": failures})
        return idle

    idle = idle_summary(results["idle"])

    startup = []
    for kind in ("weir", "nginx", "haproxy", "spawn-baseline"):
        mine = [r for r in results["startup"] if r["target"] == kind and r["status"] == "ok"]
        failures = [r["status"] for r in results["startup"] if r["target"] == kind and r["status"] != "ok"]
        startup.append({"target": kind, "ms": spread([r["ms"] for r in mine]),
                        "cpu_ms": spread([r["cpu_ms"] for r in mine]), "failures": failures})

    hot = results["hot_deploy"]
    deploys = []
    for sc in configs.hot_deploy_scenarios():
        mine = [r for r in hot["swap"] if r["target"] == sc["id"]]
        good = [r for r in mine if r["status"] == "ok"]
        if not mine:
            continue
        deploys.append({"target": sc["id"], "base": sc["base"],
                        "uncached_ms": spread([r["uncached_ms"] for r in good]),
                        "optimized_after_ms": spread([r["optimized_after_ms"] for r in good]),
                        "cached_ms": spread([r["cached_ms"] for r in good]),
                        "failures": [r["status"] for r in mine if r["status"] != "ok"]})
    warm = [x["ms"] for x in hot["startup"] if x["cache"] == "warm" and x["status"] == "ok"]
    cold = [x["ms"] for x in hot["startup"] if x["cache"] == "cold" and x["status"] == "ok"]
    attack = []
    for target, *_ in ATTACKS:
        mine = [r for r in results["attack"] if r["target"] == target and r["status"] == "ok"]
        failures = [r["status"] for r in results["attack"]
                    if r["target"] in (target, "all") and r["status"] != "ok"]
        rps_ratio, p99_ratio = [], []
        for r in mine:
            b = next((x for x in results["attack"] if x["target"] == "alone"
                      and x["round"] == r["round"] and x["status"] == "ok"), None)
            if b and b["rps"] and b["p99_us"]:
                rps_ratio.append(r["rps"] / b["rps"])
                p99_ratio.append(r["p99_us"] / b["p99_us"])
        statuses = {}
        for r in mine:
            for k, v in r["attacker_statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        attack.append({"target": target, "rps": spread([r["rps"] for r in mine]),
                       "p99_us": spread([r["p99_us"] for r in mine]),
                       "rps_vs_alone": spread(rps_ratio), "p99_vs_alone": spread(p99_ratio),
                       "attacker_statuses": statuses, "failures": failures})
    # Observability (phase observe): instructions per request under
    # callgrind, their deltas against Weir off, and what a user-space
    # instruction costs on this machine in this run (Weir off's user CPU
    # per request over its instructions per request, by round).
    obs = results.get("observe") or {}
    cg = {r["target"]: r for r in obs.get("callgrind", []) if r["status"] == "ok"}
    off = cg.get("weir off")
    ir_delta = {t: r["ir_per_req"] - cg[observe_base(t)]["ir_per_req"] for t, r in cg.items()
                if t != "weir off" and observe_base(t) in cg}
    ns = None
    if off:
        ns = spread([r["proxy_user_cpu_us_per_req"] * 1000 / off["ir_per_req"] for r in runs
                     if r["group"] == "observe" and r["target"] == "weir off"
                     and r.get("proxy_user_cpu_us_per_req")])
    observe = {"checks": obs.get("checks", []), "callgrind": obs.get("callgrind", []),
               "callgrind_skipped": obs.get("callgrind_skipped"), "ir_delta_vs_off": ir_delta,
               "ns_per_user_instruction": ns}
    # Forward authentication (phase auth): the same, against each row's
    # base, at api-key's cost of a user-space instruction.
    au = results.get("auth") or {}
    cg = {r["target"]: r for r in au.get("callgrind", []) if r["status"] == "ok"}
    api = cg.get(AUTH_API_KEY)
    ns = None
    if api:
        ns = spread([r["proxy_user_cpu_us_per_req"] * 1000 / api["ir_per_req"] for r in runs
                     if r["group"] == "auth" and r["target"] == AUTH_API_KEY
                     and r.get("proxy_user_cpu_us_per_req")])
    auth = {"checks": au.get("checks", []), "callgrind": au.get("callgrind", []),
            "callgrind_skipped": au.get("callgrind_skipped"),
            "ir_delta": {t: cg[t]["ir_per_req"] - cg[b]["ir_per_req"]
                         for t, b in AUTH_DELTA_BASE.items() if t in cg and b in cg},
            "ns_per_user_instruction": ns}
    # Fleet state (phase fleet): the same against the local row, at its
    # cost of a user-space instruction; and the admission runs by row.
    fl = results.get("fleet") or {}
    cg = {r["target"]: r for r in fl.get("callgrind", []) if r["status"] == "ok"}
    loc = cg.get(FLEET_LOCAL)
    ns = None
    if loc:
        ns = spread([r["proxy_user_cpu_us_per_req"] * 1000 / loc["ir_per_req"] for r in runs
                     if r["group"] == "fleet" and r["target"] == FLEET_LOCAL
                     and r.get("proxy_user_cpu_us_per_req")])
    accuracy = []
    for name, mode, bound in ACC_VARIANTS:
        recs = [r for r in fl.get("accuracy", []) if r["target"] == name]
        good = [r for r in recs if r["status"] == "ok"]
        if not recs:
            continue
        a = {"target": name, "mode": mode, "bound": bound, "runs": len(recs),
             "ok_runs": len(good), "failures": [r["status"] for r in recs if r["status"] != "ok"],
             "failed_ratios": [r.get("ratio") for r in recs if r["status"] != "ok"],
             "per_node_admitted": [[x["admitted"] for x in r["nodes"]] for r in good],
             "admitted_per_s": [[r["round"], r.get("admitted_per_s")] for r in good],
             "fleet_formed_s": spread([r.get("fleet_formed_s") for r in good])}
        for f in ("ratio", "admitted", "requests", "refused_429", "offered_rps", "elapsed_s",
                  "allowance", "p50_us", "p99_us"):
            a[f] = spread([r.get(f) for r in good])
        accuracy.append(a)
    outage = []
    for name, mode in OUT_VARIANTS:
        recs = [r for r in fl.get("outage", []) if r["target"] == name]
        if not recs:
            continue
        good = [r for r in recs if r["status"] == "ok"]
        o = {"target": name, "mode": mode, "runs": len(recs), "ok_runs": len(good),
             "failures": [r["status"] for r in recs if r["status"] != "ok"],
             # Every run that counted its requests, ok or not: a failed
             # request is one whatever else went wrong.
             "failed_all": [r["failed"] for r in recs if r.get("failed") is not None],
             "per_node_outages": [[x["outages"] for x in r["nodes"]] for r in good],
             "per_node_fallbacks": [[x["fallback_local"] for x in r["nodes"]] for r in good],
             "windows": [[r["round"], r["windows_after_recovery"]] for r in good],
             "admitted_per_s": [[r["round"], r.get("admitted_per_s")] for r in good],
             "noticed_ms": [[r["round"], r.get("noticed_ms")] for r in good],
             "reachable_ms": [[r["round"], r.get("reachable_ms")] for r in good],
             "never_recovered": sum(1 for r in good if r["recovery_ms"] is None),
             "recovery_by_round": [r["recovery_ms"] for r in good],
             # When the last gateway's log said Redis reachable again.
             "last_reachable_by_round": [
                 None if None in (r.get("reachable_ms") or [None]) else max(r["reachable_ms"])
                 for r in good],
             "failed_by_round": [[r["failed"], r["h2load_errored"], r["h2load_timeout"]]
                                 for r in good],
             "other_statuses": [[r["round"], r["other_statuses"]] for r in recs
                                if r.get("other_statuses")]}
        for f in ("requests", "failed", "h2load_errored", "h2load_timeout", "admitted",
                  "refused_429", "offered_rps", "elapsed_s", "ratio", "redis_down_s",
                  "redis_killed_after_first_s", "admitted_while_down", "fallback_allowance",
                  "while_down_ratio", "recovery_ms", "p50_us", "p99_us"):
            o[f] = spread([r.get(f) for r in good])
        outage.append(o)
    fleet = {"checks": fl.get("checks", []), "callgrind": fl.get("callgrind", []),
             "callgrind_skipped": fl.get("callgrind_skipped"),
             "ir_delta": {t: cg[t]["ir_per_req"] - cg[b]["ir_per_req"]
                          for t, b in FLEET_DELTA_BASE.items() if t in cg and b in cg},
             "ns_per_user_instruction": ns, "accuracy": accuracy, "outage": outage,
             "accuracy_skipped": fl.get("accuracy_skipped")}
    results["summary"] = {"throughput": rows,
                          "plain_deterministic": results.get("plain_deterministic", []),
                          "plugin_deterministic": results.get("plugin_deterministic", []),
                          "close_deterministic": results.get("close_deterministic", []),
                          "idle": idle, "startup": startup,
                          "observe": observe, "auth": auth, "fleet": fleet,
                          "attack": attack, "tls_idle": idle_summary(results["tls_idle"]),
                          "tls_checks": results["tls_checks"],
                          "h2_checks": results.get("h2_checks", []),
                          "hot_deploy": {"deploys": deploys, "load": hot["load"],
                                         "startup_warm_ms": spread(warm),
                                         "startup_cold_ms": spread(cold),
                                         "skipped": hot.get("skipped")}}
    results["goals"] = goals(results["summary"])


def goals(summary):
    rows = {(r["group"], r["target"]): r for r in summary["throughput"]}

    def med(row, field):
        if row is None or row.get("skipped") or not row.get(field):
            return None
        return row[field]["median"]

    out = []

    def goal(text, value, ok, fmt, why_missing):
        if value is None:
            out.append({"goal": text, "status": "not measured", "detail": why_missing})
        else:
            out.append({"goal": text, "status": "met" if ok(value) else "not met",
                        "detail": fmt(value)})

    def paired_goal(text, row, field, ok, fmt, why_missing):
        """A goal on a figure paired by round (a ratio or a delta against
        the run it is compared with in the same round). `met` only when
        every round meets it and `not met` only when none does: when the
        rounds disagree, the machine's noise between rounds is larger than
        the margin, and the run cannot tell (`undecided`). `ok` is a
        threshold, so checking the smallest and largest round suffices."""
        s = None if row is None or row.get("skipped") else row.get(field)
        if not s:
            out.append({"goal": text, "status": "not measured", "detail": why_missing})
            return
        lo, hi = ok(s["min"]), ok(s["max"])
        status = "met" if lo and hi else "not met" if not lo and not hi else "undecided"
        detail = fmt(s["median"])
        detail += f", rounds {fmt_range(s, field)}" if s["n"] > 1 else ", one round only"
        if status == "undecided":
            detail += f" ({sum(map(ok, s['values']))} of {s['n']} rounds meet it)"
        out.append({"goal": text, "status": status, "detail": detail})

    def fmt_range(s, field):
        if field.endswith("_us"):
            return f"{s['min']:+.2f}..{s['max']:+.2f}"
        return f"{s['min']:.2f}x..{s['max']:.2f}x"

    weir = rows.get(("plain", "weir"))
    for text, limit in (("plain proxying: Weir CPU/request <= 1.0x nginx", 1.0),
                        ("stretch: plain proxying Weir CPU/request <= 0.9x nginx", 0.9)):
        paired_goal(text, weir, "proxy_cpu_us_per_req_vs_nginx", lambda v, m=limit: v <= m,
                    lambda v: f"median ratio {v:.2f}x", "no successful plain runs")
    paired_goal("plain proxying: Weir req/s >= nginx", weir, "rps_vs_nginx", lambda v: v >= 1.0,
                lambda v: f"median ratio {v:.2f}x", "no successful plain runs")
    # Issue 23's goals on the CPU rows: requests per second, p99 at the
    # phase's connection count, and Connection: close.
    paired_goal("plain proxying: Weir req/s >= 1.1x nginx", weir, "rps_vs_nginx",
                lambda v: v >= 1.1, lambda v: f"median ratio {v:.2f}x", "no successful plain runs")
    paired_goal("plain proxying: Weir p99 latency <= nginx's (50 connections)", weir,
                "p99_us_vs_nginx", lambda v: v <= 1.0, lambda v: f"median ratio {v:.2f}x",
                "no successful plain runs")
    paired_goal("Connection: close: Weir CPU/request <= 1.0x nginx", rows.get(("close", "weir")),
                "proxy_cpu_us_per_req_vs_nginx", lambda v: v <= 1.0,
                lambda v: f"median ratio {v:.2f}x", "no successful close runs")

    def plugin_goal(pid, limit):
        row = rows.get(("plugin", f"weir+{pid}"))
        why = row["skipped"] if row and row.get("skipped") else "no successful runs"
        paired_goal(f"{pid} plugin: <= +{limit} us CPU/request over Weir plain", row,
                    "cpu_delta_vs_weir_plain_us", lambda v: v <= limit,
                    lambda v: f"median delta {v:+.2f} us/request", why)

    plugin_goal("noop", 0.5)
    plugin_goal("header-rewrite", 1.0)

    api = rows.get(("plugin", "weir+api-key"))
    lua = rows.get(("plugin", "nginx+lua-api-key"))
    a, b = med(api, "proxy_cpu_us_per_req"), med(lua, "proxy_cpu_us_per_req")
    why = api["skipped"] if api and api.get("skipped") else "no successful runs"
    paired_goal("api-key in Weir cheaper (CPU/request) than the Lua check in nginx", api,
                "cpu_vs_lua_check", lambda v: v < 1.0,
                lambda v: f"Weir {a:.2f} vs nginx+Lua {b:.2f} us/request, median ratio "
                          f"{v:.2f}x", why)

    # Issue 23's goals on the deterministic figure: user-space instructions
    # per request under callgrind, one fresh proxy per row over the same
    # fixed request count (plain_deterministic, plugin_deterministic).
    ir = {}
    ir_why = {}
    for r in (summary.get("plain_deterministic", []) + summary.get("plugin_deterministic", [])
              + [dict(r, target=f"close {r['target']}")
                 for r in summary.get("close_deterministic", [])]):
        cg = r.get("instructions") or {}
        if cg.get("status") == "ok" and cg.get("ir_per_req"):
            ir[r["target"]] = cg["ir_per_req"]
        else:
            ir_why[r["target"]] = cg.get("status", "callgrind not run")

    def ir_missing(*targets):
        for t in targets:
            if t not in ir:
                return f"{t}: " + ir_why.get(t, "not run")[:300]
        return None

    def ir_goal(text, targets, ok, detail):
        why = ir_missing(*targets)
        if why:
            out.append({"goal": text, "status": "not measured", "detail": why})
            return
        v = [ir[t] for t in targets]
        out.append({"goal": text, "status": "met" if ok(*v) else "not met",
                    "detail": detail(*v)})

    def fmt_ir_delta(a, b, a_name, b_name):
        return (f"{a_name} {a:,.0f} vs {b_name} {b:,.0f} instructions/request, "
                f"delta {a - b:+,.0f} ({(a - b) / b * 100:+.1f}%)")

    for pid, pct in (("noop", 3), ("header-rewrite", 8)):
        ir_goal(f"{pid} plugin: adds <= {pct}% of Weir plain's instructions/request (callgrind)",
                (f"weir+{pid}", "weir"), lambda a, b, pct=pct: a - b <= b * pct / 100,
                lambda a, b, pid=pid: fmt_ir_delta(a, b, f"weir+{pid}", "Weir plain"))
    ir_goal("api-key plugin: adds fewer instructions/request over Weir plain than the Lua "
            "check over nginx plain (callgrind)",
            ("weir+api-key", "weir", "nginx+lua-api-key", "nginx"),
            lambda a, b, c, d: a - b < c - d,
            lambda a, b, c, d: (f"{fmt_ir_delta(a, b, 'weir+api-key', 'Weir plain')}; "
                                f"{fmt_ir_delta(c, d, 'nginx+Lua', 'nginx plain')}; "
                                f"Weir's delta minus nginx's {(a - b) - (c - d):+,.0f}"))
    ir_goal("plain keep-alive: Weir instructions/request <= nginx (callgrind)",
            ("weir", "nginx"), lambda a, b: a <= b,
            lambda a, b: fmt_ir_delta(a, b, "Weir", "nginx"))
    ir_goal("Connection: close: Weir instructions/request <= nginx (callgrind)",
            ("close weir", "close nginx"), lambda a, b: a <= b,
            lambda a, b: fmt_ir_delta(a, b, "Weir", "nginx"))

    idle = {r["target"]: r for r in summary["idle"]}
    per_conn = idle["weir"]["bytes_per_conn"]
    goal("10,000 idle connections: Weir RSS growth <= 2 KB per connection",
         per_conn["median"] if per_conn else None, lambda v: v <= 2048,
         lambda v: f"Weir {v:,.0f} B per connection", "idle runs failed")
    w, n = idle["weir"]["growth_kib"], idle["nginx"]["growth_kib"]
    goal("10,000 idle connections: Weir RSS growth <= nginx",
         (w["median"], n["median"]) if w and n else None, lambda v: v[0] <= v[1],
         lambda v: f"Weir +{v[0] / 1024:.1f} MiB vs nginx +{v[1] / 1024:.1f} MiB",
         "idle runs failed")
    st = {r["target"]: r for r in summary["startup"]}
    goal("start-up to first proxied response <= 10 ms (no plugins)",
         st["weir"]["ms"]["median"] if st["weir"]["ms"] else None, lambda v: v <= 10.0,
         lambda v: f"Weir median {v:.1f} ms", "start-up runs failed")

    hot = summary["hot_deploy"]
    deploys = [d for d in hot["deploys"] if d["uncached_ms"]]

    def slowest(field):
        if not deploys or any(not d[field] for d in deploys):
            return None
        worst = max(deploys, key=lambda d: d[field]["median"])
        return (worst[field]["median"], worst["target"])

    goal("hot deploy, rename -> first response by the new file, uncached: < 100 ms "
         "(slowest bundled plugin, median)", slowest("uncached_ms"), lambda v: v[0] < 100.0,
         lambda v: f"slowest {v[1]} {v[0]:.1f} ms", "hot-deploy runs failed or not run")
    goal("hot deploy, same with the compiled module cached: < 20 ms "
         "(slowest bundled plugin, median)", slowest("cached_ms"), lambda v: v[0] < 20.0,
         lambda v: f"slowest {v[1]} {v[0]:.1f} ms", "hot-deploy runs failed or not run")
    load = hot["load"] or {}
    goal(f"hot deploy: failed requests during {HOT_SWAPS} swaps under load = 0",
         load.get("failed") if load.get("status") == "ok" else None, lambda v: v == 0,
         lambda v: f"{v} failed of {load['requests']} requests",
         load.get("status", "not run"))
    sw = hot["startup_warm_ms"]
    goal(f"start-up to first response with {MANY_PLUGINS} cached plugins < 100 ms",
         sw["median"] if sw else None, lambda v: v < 100.0,
         lambda v: f"median {v:.1f} ms", "start-up runs failed or not run")

    attacks = {r["target"]: r for r in summary["attack"]}
    for target, rps_min, p99_max in (("1 conn, every call spins", 0.85, 1.5),
                                     ("2 conns, every call spins", 0.7, 2.0)):
        row = attacks.get(target)
        why = (row["failures"][0] if row and row["failures"] else "not run")
        paired_goal(f"plugin attack, {target}: other route req/s >= {rps_min}x alone", row,
                    "rps_vs_alone", lambda v, m=rps_min: v >= m,
                    lambda v: f"median {v:.2f}x", why)
        paired_goal(f"plugin attack, {target}: other route p99 <= {p99_max}x alone", row,
                    "p99_vs_alone", lambda v, m=p99_max: v <= m,
                    lambda v: f"median {v:.2f}x", why)

    def tls_why(group):
        failed = rows.get(("tls", "all"))
        row = rows.get((group, "weir"))
        if failed:
            return failed["skipped"]
        if row is None:
            return "TLS phase not run"
        return row["failures"][0] if row.get("failures") else "no successful runs"

    paired_goal("HTTPS keep-alive proxying: Weir CPU/request <= 1.0x nginx",
                rows.get(("tls", "weir")), "proxy_cpu_us_per_req_vs_nginx", lambda v: v <= 1.0,
                lambda v: f"median ratio {v:.2f}x", tls_why("tls"))
    paired_goal("new TLS connections (full handshake each): Weir CPU/connection <= 1.0x nginx",
                rows.get(("tls-new", "weir")), "proxy_cpu_us_per_req_vs_nginx",
                lambda v: v <= 1.0, lambda v: f"median ratio {v:.2f}x", tls_why("tls-new"))
    paired_goal("resumed TLS connections: Weir CPU/connection <= 0.5x its full handshake",
                rows.get(("tls-resumed", "weir")), "cpu_vs_full_handshake", lambda v: v <= 0.5,
                lambda v: f"median ratio {v:.2f}x", tls_why("tls-resumed"))

    def h2_why(group):
        for key in ((group, "weir"), (group, "all"), ("h2", "all")):
            row = rows.get(key)
            if row and row.get("skipped"):
                return row["skipped"]
            if row and row.get("failures"):
                return row["failures"][0]
        return "h2 phase not run" if not any(g in ("h2", "grpc") for g, _ in rows) \
            else "no successful runs of Weir and of HAProxy or nginx in the same round"

    for group, what in (("h2", "HTTP/2 end to end (h2c both sides)"),
                        ("grpc", "gRPC unary (h2c both sides)")):
        row = rows.get((group, "weir"))
        paired_goal(f"{what}: Weir CPU/request <= 1.0x the better of HAProxy and nginx",
                    row, "proxy_cpu_us_per_req_vs_best", lambda v: v <= 1.0,
                    lambda v, row=row: f"median ratio {v:.2f}x (the better: "
                    f"{', '.join(sorted(set(row['best_by_round'])))})", h2_why(group))

    def fmt_delta(s):
        text = f"median delta {s['median']:+.2f} us/request"
        return text + (f", rounds {s['min']:+.2f}..{s['max']:+.2f}" if s["n"] > 1
                       else ", one round only")

    def delta_goal(s, limit, ir, ns, ns_whose, phase, target, note=""):
        """A delta goal (issues 20 and 21): decided on the CPU delta `s`
        when every round is on the same side of `limit` (as paired_goal),
        otherwise on the instruction delta `ir` under callgrind, converted
        to time at this run's cost of a user-space instruction (`ns`, the
        row `ns_whose`'s); the detail says which figure decided and quotes
        the other. (status, detail); `not measured` when `s` is missing,
        with only the callgrind part as the detail."""
        est = ir * ns["median"] / 1000 if ir is not None and ns else None
        cg = None
        if ir is not None:
            cg = f"callgrind {ir:+,.0f} instructions/request"
            if est is not None:
                cg += (f" = {est:+.2f} us at {ns['median']:.3f} ns per user-space instruction "
                       f"({ns_whose}'s, this run)")
            cg += note
        if not cg:
            failed = [r for r in phase.get("callgrind", []) if r.get("target") == target
                      and r["status"] != "ok"]
            cg = ("no callgrind figure: " + (failed[0]["status"][:200] if failed else
                                             phase.get("callgrind_skipped") or "not run"))
        if not s:
            return "not measured", cg
        lo, hi = s["min"] <= limit, s["max"] <= limit
        if lo == hi:
            return ("met" if lo else "not met"), f"decided by CPU time: {fmt_delta(s)}; {cg}"
        meets = sum(v <= limit for v in s["values"])
        disagree = f"{fmt_delta(s)} ({meets} of {s['n']} rounds meet it)"
        if est is not None:
            return ("met" if est <= limit else "not met"), \
                f"rounds disagree on CPU time, {disagree}: decided by {cg}"
        return "undecided", f"{disagree}; {cg}"

    def not_measured_why(group, row, base):
        """Why a delta row has no figure: its own skip or failure, the
        phase's, or its base's."""
        phase = rows.get((group, "all"))
        why = (row["skipped"] if row and row.get("skipped") else
               row["failures"][0] if row and row.get("failures") else
               phase["skipped"] if phase and phase.get("skipped") else
               f"{group} phase not run" if row is None else "no successful runs")
        if row is not None and not row.get("skipped") and not row.get("failures"):
            b = rows.get((group, base))
            if b and (b.get("skipped") or b.get("failures")):
                why = f"{base}: " + (b.get("skipped") or b["failures"][0])
        return why

    obs = summary.get("observe") or {}

    def observe_goal(text, target, limit):
        """Issue 20's cost goals, each against Weir off (delta_goal); the
        log's detail also quotes nginx's log delta, the anchor."""
        row = rows.get(("observe", target))
        s = None if row is None or row.get("skipped") else row.get("cpu_delta_us")
        note = (" (user space only: the log's write calls are kernel time)"
                if "log" in target else "")
        status, detail = delta_goal(s, limit, obs.get("ir_delta_vs_off", {}).get(target),
                                    obs.get("ns_per_user_instruction"), "Weir off", obs, target,
                                    note)
        if status == "not measured":
            out.append({"goal": text, "status": status,
                        "detail": f"{not_measured_why('observe', row, 'weir off')}; {detail}"})
            return
        if target == "weir metrics+log":
            ng = rows.get(("observe", "nginx log"))
            nd = ng.get("cpu_delta_us") if ng and not ng.get("skipped") else None
            detail += ("; nginx's access log (the anchor): " + fmt_delta(nd) if nd else
                       "; nginx's access log: not measured")
        out.append({"goal": text, "status": status, "detail": detail})

    observe_goal("metrics on: <= +0.3 us CPU/request over Weir with metrics, log and tracing off",
                 "weir metrics", 0.3)
    observe_goal("metrics + JSON access log to a file: <= +1.0 us CPU/request over Weir all off",
                 "weir metrics+log", 1.0)
    observe_goal("tracing, traceparent propagated: <= +0.3 us CPU/request over Weir all off, "
                 "both sent the same traceparent", "weir tracing", 0.3)

    # Issue 21: forward authentication.
    au = summary.get("auth") or {}
    row = rows.get(("auth", AUTH_CACHED))
    s = None if row is None or row.get("skipped") else row.get("cpu_delta_us")
    status, detail = delta_goal(s, 0.5, au.get("ir_delta", {}).get(AUTH_CACHED),
                                au.get("ns_per_user_instruction"), "api-key", au, AUTH_CACHED)
    if status == "not measured":
        detail = f"{not_measured_why('auth', row, AUTH_API_KEY)}; {detail}"
    out.append({"goal": "ext-auth, cached decision: <= +0.5 us CPU/request over api-key",
                "status": status, "detail": detail})
    row = rows.get(("auth", AUTH_EVERY))
    ng = rows.get(("auth", AUTH_NGINX))

    def every_detail(v):
        text = f"median ratio {v:.2f}x"
        if ng and not ng.get("skipped") and ng.get("proxy_cpu_us_per_req"):
            text += (f" (Weir {row['proxy_cpu_us_per_req']['median']:.2f} vs nginx "
                     f"{ng['proxy_cpu_us_per_req']['median']:.2f} us/request; user CPU "
                     f"{row['proxy_user_cpu_us_per_req']['median']:.2f} vs "
                     f"{ng['proxy_user_cpu_us_per_req']['median']:.2f})")
        return text

    paired_goal("ext-auth, a call on every request: Weir CPU/request <= nginx auth_request to "
                "the same service", row, "proxy_cpu_us_per_req_vs_nginx", lambda v: v <= 1.0,
                every_detail, not_measured_why("auth", row, AUTH_NGINX))

    # Issue 22: fleet-wide state through Redis.
    fl = summary.get("fleet") or {}
    row = rows.get(("fleet", FLEET_SYNC))
    s = None if row is None or row.get("skipped") else row.get("cpu_delta_us")
    status, detail = delta_goal(s, 0.3, fl.get("ir_delta", {}).get(FLEET_SYNC),
                                fl.get("ns_per_user_instruction"), "local", fl, FLEET_SYNC)
    if status == "not measured":
        detail = f"{not_measured_why('fleet', row, FLEET_LOCAL)}; {detail}"
    out.append({"goal": "fleet sync: <= +0.3 us CPU/request over a local limit",
                "status": status, "detail": detail})
    acc = {a["target"]: a for a in fl.get("accuracy", [])}
    ctl = acc.get(ACC_LOCAL)
    control = (f"; control {ACC_LOCAL}: {ctl['ratio']['median']:.2f}x"
               if ctl and ctl["ratio"] else "")
    for text, name in (("strict: admitted <= 1.02x the limit", ACC_STRICT),
                       ("sync at 100 ms: admitted <= 1.10x the limit", ACC_SYNC)):
        a = acc.get(name)
        if not a or not a["ratio"]:
            why = (a["failures"][0] if a and a["failures"] else
                   fl.get("accuracy_skipped") or "fleet phase not run")
            out.append({"goal": text, "status": "not measured",
                        "detail": " ".join(why.split())[:400]})
            continue
        r, bound = a["ratio"], a["bound"]
        meets = sum(v <= bound for v in r["values"])
        status = "met" if meets == r["n"] else "not met"
        detail = (f"admitted / (capacity + refill x elapsed): median {r['median']:.3f}x"
                  + (f", rounds {r['min']:.3f}x..{r['max']:.3f}x" if r["n"] > 1
                     else ", one round only"))
        if status == "not met" and r["n"] > 1:
            detail += f" ({meets} of {r['n']} rounds meet it)"
        detail += (f"; admitted {a['admitted']['median']:.0f} against a limit of "
                   f"{a['allowance']['median']:.0f} over {a['elapsed_s']['median']:.2f} s, "
                   f"{a['offered_rps']['median']:.0f} req/s offered{control}")
        if a["failures"]:
            detail += (f"; {len(a['failures'])} failed run(s) left out: "
                       f"{' '.join(a['failures'][0].split())[:200]}")
        out.append({"goal": text, "status": status, "detail": detail})
    # Issue 22's third goal, one line per half, each over both modes (every
    # run of strict and of sync must meet it; the detail gives each mode).
    outs = fl.get("outage", [])
    missing = [n for n, _ in OUT_VARIANTS if n not in {o["target"] for o in outs}]
    why_none = fl.get("accuracy_skipped") or "fleet phase not run"

    def left_out(o):
        return (f" ({len(o['failures'])} failed run(s) left out: "
                f"{' '.join(o['failures'][0].split())[:200]})" if o["failures"] else "")

    text = "Redis killed and restarted (fail-open): failed requests = 0"
    if not outs:
        out.append({"goal": text, "status": "not measured", "detail": why_none[:400]})
    else:
        parts, status = [], "met"
        for o in outs:
            f = o["failed_all"]
            if not f:
                status = "not measured" if status == "met" else status
                parts.append(f"{o['mode']}: no run counted its requests: "
                             + " ".join((o["failures"] or ["?"])[0].split())[:200])
                continue
            if any(f):
                status = "not met"
            req = o["requests"]
            parts.append(f"{o['mode']}: {sum(f)} failed"
                         + (f" (rounds {'/'.join(map(str, f))})" if len(f) > 1 else "")
                         + (f" of {req['median']:.0f} requests" if req else "")
                         + f", h2load errored {sum(x[1] for x in o['failed_by_round'])}, "
                         f"timeout {sum(x[2] for x in o['failed_by_round'])}"
                         + (f", answers {o['other_statuses']}" if o["other_statuses"] else "")
                         + left_out(o))
        if missing and status == "met":
            status = "not measured"
            parts.append(f"not run: {', '.join(missing)}")
        out.append({"goal": text, "status": status,
                    "detail": "anything but 2xx or 429, and h2load's errors: " + "; ".join(parts)})
    text = (f"Redis killed and restarted (fail-open): limits enforced again <= "
            f"{OUT_SYNC_INTERVALS} sync intervals after recovery")
    bound_ms = OUT_SYNC_INTERVALS * FLEET_SYNC_INTERVAL_S * 1000
    if not outs:
        out.append({"goal": text, "status": "not measured", "detail": why_none[:400]})
    else:
        parts, status = [], "met"
        for o in outs:
            r = o["recovery_ms"]
            if not o["ok_runs"]:
                status = "not measured" if status == "met" else status
                parts.append(f"{o['mode']}: no run measured: "
                             + " ".join(o["failures"][0].split())[:200])
                continue
            if o["never_recovered"] or not r or r["max"] > bound_ms:
                status = "not met"
            vals = ["never" if v is None else f"{v:.0f}" for v in o["recovery_by_round"]]
            lr = "/".join("?" if v is None else str(v) for v in o["last_reachable_by_round"])
            parts.append(f"{o['mode']}: {'/'.join(vals)} ms by round (every gateway's log said "
                         f"Redis reachable within {lr} ms), Redis down "
                         f"{fmt_spread(o['redis_down_s'], 1, 2, ' s')}, admitted while down "
                         f"{fmt_spread(o['while_down_ratio'], 1, 2, 'x')} the fallback's "
                         f"allowance" + left_out(o))
        if missing and status == "met":
            status = "not measured"
            parts.append(f"not run: {', '.join(missing)}")
        lim = configs.FLEET_LIMIT
        out.append({"goal": text, "status": status,
                    "detail": f"<= {bound_ms:.0f} ms from Redis accepting connections again to "
                    f"the first {OUT_WINDOW_S * 1000:.0f} ms window from which any n windows in "
                    f"a row admit <= {lim['capacity']} + "
                    f"{OUT_RATE_SLACK * lim['refill_per_second'] * OUT_WINDOW_S:.0f} x n: "
                    + "; ".join(parts)})
    return out


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def fmt_spread(s, scale=1.0, digits=0, unit=""):
    if not s:
        return "-"
    m, lo, hi = s["median"] * scale, s["min"] * scale, s["max"] * scale
    if s["n"] == 1:
        return f"{m:.{digits}f}{unit}"
    return f"{m:.{digits}f}{unit} [{lo:.{digits}f}-{hi:.{digits}f}]"


def fmt_ratio(s):
    if not s:
        return "-"
    if s["n"] == 1:
        return f"{s['median']:.2f}x"
    return f"{s['median']:.2f}x [{s['min']:.2f}-{s['max']:.2f}]"


GROUP_TITLES = {
    "plain": "1. Plain proxying, keep-alive (wrk -c{c}, {d}s per run)",
    "plugin": "2. Plugins (Weir) and the API-key check in Lua (nginx), keep-alive",
    "close": "3. Connection: close clients (accept + connect cost)",
    "balancer": "1b. Balancer cost: Weir over two endpoints, round_robin vs least_request, keep-alive",
    "tls": "8a. HTTPS keep-alive proxying (wrk -c{c} https://, {d}s per run)",
}


def unmeasured_row(r, header, rows, notes):
    """A skipped or failed row of the observe and auth tables: added with its
    reason (in `notes`); whether it was one."""
    if not (r.get("skipped") or not r["ok_runs"]):
        return False
    why = r.get("skipped") or "FAILED: " + r["failures"][0]
    rows.append([r["target"], why.split(":")[0] + " (below)"] + [""] * (len(header) - 2))
    notes.append(f"{r['target']}: {why}")
    return True


def delta_cells(r, cg, notes):
    """The CPU delta and the callgrind instructions per request of a row of the
    observe and auth tables, as their cells say them."""
    d = r.get("cpu_delta_us")
    delta = "-" if not d else (f"{d['median']:+.2f} us" if d["n"] == 1 else
                               f"{d['median']:+.2f} us [{d['min']:+.2f}..{d['max']:+.2f}]")
    if d:
        delta += f" vs {r['delta_base']}"
    c = cg.get(r["target"])
    if c and c["status"] == "ok":
        instr = f"{c['ir_per_req']:,.0f}"
    elif c:
        instr = "FAILED (below)"
        notes.append(f"{r['target']}, callgrind: {c['status']}")
    else:
        instr = "-"
    return delta, instr


def det_cells(rec, notes, instructions=False):
    """The syscalls/req, top syscalls and allocs/req cells of a row
    (plain_deterministic, plugin_deterministic), and with `instructions`
    first the instructions/req one (callgrind); a failure goes to
    `notes`, its cell says so."""
    if rec is None:
        return ["-"] * (4 if instructions else 3)
    pre = []
    if instructions:
        cg = rec.get("instructions") or {}
        if cg.get("status") == "ok":
            pre = [f"{cg['ir_per_req']:,.0f}"]
        else:
            pre = ["not measured"]
            notes.append(f"{rec['target']}, callgrind: {cg.get('status', 'not run')[:300]}")
    return pre + _det_cells(rec, notes)


def _det_cells(rec, notes):
    sc, al = rec.get("syscalls") or {}, rec.get("allocs") or {}
    if sc.get("status") == "ok":
        cells = [f"{sc['syscalls_per_req']:.2f}",
                 ", ".join(f"{t['syscall']} {t['per_req']:.2f}" for t in sc["top"])]
    else:
        cells = ["not measured", ""]
        notes.append(f"{rec['target']}, strace: {sc.get('status', 'not run')[:300]}")
    if al.get("status") == "ok":
        cells.append(f"{al['allocs_per_req']:.2f}")
    else:
        cells.append("dhat unusable" if al.get("status", "").startswith("dhat unusable")
                     else "not measured")
        notes.append(f"{rec['target']}, dhat: {al.get('status', 'not run')[:300]}")
    return cells


def render(results, markdown=False):
    s = results["summary"]
    m = results["meta"]["mode"]
    lines = []

    def table(header, rows):
        if markdown:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join(" --- " for _ in header) + "|")
            for r in rows:
                lines.append("| " + " | ".join(r) + " |")
        else:
            widths = [max(len(x) for x in col) for col in zip(header, *rows)]
            fmt = "  ".join(f"{{:<{w}}}" for w in widths)
            lines.append(fmt.format(*header))
            lines.append(fmt.format(*("-" * w for w in widths)))
            for r in rows:
                lines.append(fmt.format(*r))
        lines.append("")

    def title(t):
        lines.append(f"### {t}" if markdown else t)
        lines.append("")

    n_rounds = m["rounds"]
    lines.append(("" if markdown else "") +
                 f"Median of {n_rounds} round(s) [min-max]; ratios are to nginx in the same round "
                 "(plain nginx for plugin rows). CPU is the proxy's own CPU time per request "
                 "(all its threads/processes, from schedstat).")
    lines.append("")

    def failed_row(r, width):
        if r.get("skipped"):
            return [r["target"], r["skipped"]] + [""] * (width - 2)
        return [r["target"], "FAILED: " + r["failures"][0][:120]] + [""] * (width - 2)

    def throughput_table(group):
        title(GROUP_TITLES[group].format(c=m["conns"], d=m["duration"]))
        header = ["proxy", "req/s", "req/s vs nginx", "p50 ms", "p99 ms",
                  "CPU us/req", "CPU vs nginx", "upstream CPU us/req"]
        if group == "plugin":
            header.append("CPU delta vs Weir plain")
        if group == "balancer":
            header.append("CPU vs round_robin")
        det = {}
        if group == "plain":
            # Issue 23's deterministic figures (plain_deterministic).
            header += ["instructions/req", "syscalls/req", "top syscalls/req", "allocs/req"]
            det = {r["target"]: r for r in s.get("plain_deterministic", [])}
        if group == "plugin":
            # ...and for the plugin rows (plugin_deterministic).
            header += ["instructions/req", "syscalls/req", "top syscalls/req", "allocs/req"]
            det = {r["target"]: r for r in s.get("plugin_deterministic", [])}
        det_notes = []
        rows = []
        for r in s["throughput"]:
            if r["group"] != group:
                continue
            if r.get("skipped") or not r["ok_runs"]:
                row = failed_row(r, len(header))
            else:
                row = [r["target"] + ("" if not r["failures"] else f" ({len(r['failures'])} failed)"),
                       fmt_spread(r["rps"]), fmt_ratio(r["rps_vs_nginx"]),
                       fmt_spread(r["p50_us"], 1e-3, 2), fmt_spread(r["p99_us"], 1e-3, 2),
                       fmt_spread(r["proxy_cpu_us_per_req"], 1, 2),
                       fmt_ratio(r["proxy_cpu_us_per_req_vs_nginx"]),
                       fmt_spread(r["upstream_cpu_us_per_req"], 1, 2)]
                if group == "plugin":
                    d = r.get("cpu_delta_vs_weir_plain_us")
                    row.append("-" if not d else
                               (f"{d['median']:+.2f} us" if d["n"] == 1 else
                                f"{d['median']:+.2f} us [{d['min']:+.2f}..{d['max']:+.2f}]"))
                if group == "balancer":
                    row.append(fmt_ratio(r.get("cpu_vs_round_robin")))
                if group == "plain":
                    row += det_cells(det.get(r["target"]), det_notes, instructions=True)
                if group == "plugin":
                    row += det_cells(det.get(r["target"]), det_notes, instructions=True)
            rows.append(row)
        table(header, rows)
        for n in det_notes:
            lines.append(("* " if markdown else "") + n)
        if det_notes:
            lines.append("")

    def idle_table(recs):
        rows = []
        for r in recs:
            if not r["growth_kib"]:
                rows.append([r["target"], ("FAILED: " + r["failures"][0][:120]) if r["failures"]
                             else "not run", "", "", "", ""])
                continue
            rows.append([r["target"], fmt_spread(r["rss_before_kib"], 1 / 1024, 1, " MiB"),
                         fmt_spread(r.get("rss_after_kib"), 1 / 1024, 1, " MiB"),
                         fmt_spread(r["growth_kib"], 1 / 1024, 1, " MiB"),
                         fmt_spread(r["bytes_per_conn"], 1, 0, " B"),
                         fmt_ratio(r["growth_vs_nginx"])])
        table(["proxy", "RSS before", "RSS with them", "RSS growth", "per connection",
               "growth vs nginx"], rows)

    def kinds(h):
        return "-" if not h else f"{h['full']} full, {h['resumed']} resumed"

    def handshake_table(group):
        header = ["proxy", "conn/s", "conn/s vs nginx", "CPU us/conn", "CPU vs nginx",
                  "handshakes per CPU-second", "upstream CPU us/conn"]
        if group == "tls-resumed":
            header.append("CPU vs its full handshake")
        header.append("handshakes: proxy counted / s_time saw")
        rows = []
        for r in s["throughput"]:
            if r["group"] != group:
                continue
            if r.get("skipped") or not r["ok_runs"]:
                rows.append(failed_row(r, len(header)))
                continue
            row = [r["target"] + ("" if not r["failures"] else f" ({len(r['failures'])} failed)"),
                   fmt_spread(r["rps"]), fmt_ratio(r["rps_vs_nginx"]),
                   fmt_spread(r["proxy_cpu_us_per_req"], 1, 2),
                   fmt_ratio(r["proxy_cpu_us_per_req_vs_nginx"]),
                   fmt_spread(r["handshakes_per_cpu_s"]),
                   fmt_spread(r["upstream_cpu_us_per_req"], 1, 2)]
            if group == "tls-resumed":
                row.append(fmt_ratio(r.get("cpu_vs_full_handshake")))
            row.append(f"{kinds(r.get('handshakes_counted'))} / {kinds(r.get('client_saw'))}")
            rows.append(row)
        table(header, rows)

    for group in ("plain", "balancer", "plugin", "close"):
        throughput_table(group)

    title(f"4. {results['meta']['mode']['idle_conns']:,} idle keep-alive client connections: RSS growth")
    idle_table(s["idle"])

    title("5. Start-up: spawn to first proxied 200")
    rows = []
    for r in s["startup"]:
        if r["target"] == "spawn-baseline":
            rows.append(["spawn+exec of /bin/sleep (baseline)", "-",
                         fmt_spread(r["cpu_ms"], 1, 1, " ms")])
        elif r["ms"]:
            rows.append([r["target"], fmt_spread(r["ms"], 1, 1, " ms"),
                         fmt_spread(r["cpu_ms"], 1, 1, " ms")])
        else:
            rows.append([r["target"], ("FAILED: " + r["failures"][0]) if r["failures"] else "not run", ""])
    table(["proxy", "wall time", "CPU time of the process until then"], rows)

    title("6. Hot deploy: rename of NAME.wasm -> first response served by the new file")
    hot = s["hot_deploy"]
    if hot.get("skipped"):
        lines.append(f"skipped: {hot['skipped']}")
        lines.append("")
    rows = []
    for d in hot["deploys"]:
        if not d["uncached_ms"]:
            rows.append([d["target"], d["base"], "FAILED: " + d["failures"][0][:120], "", ""])
            continue
        rows.append([d["target"] + ("" if not d["failures"] else f" ({len(d['failures'])} failed)"),
                     d["base"], fmt_spread(d["uncached_ms"], 1, 1, " ms"),
                     fmt_spread(d["optimized_after_ms"], 1, 1, " ms"),
                     fmt_spread(d["cached_ms"], 1, 1, " ms")])
    table(["plugin deployed", "replacing", "uncached (fresh cache; baseline code)",
           "optimized build serving after", "cached"], rows)
    load = hot["load"] or {}
    if load.get("status") == "ok":
        lines.append(f"{load['swaps']} swaps (noop <-> header-rewrite) under wrk -c8 load: "
                     f"{load['requests']} requests, {load['failed']} failed "
                     f"(non-2xx {load['non2xx']}, socket errors {load['socket_errors']}); "
                     f"new file serving after median {load['visible_ms']['median']:.1f} ms, "
                     f"max {load['visible_ms']['max']:.1f} ms")
    elif load:
        lines.append(f"swaps under load: {load['status']}")
    if hot["startup_warm_ms"] or hot["startup_cold_ms"]:
        lines.append(f"start-up to first response through a plugin, {MANY_PLUGINS} plugins: "
                     f"cached {fmt_spread(hot['startup_warm_ms'], 1, 1, ' ms')}, "
                     f"first start (cache empty) {fmt_spread(hot['startup_cold_ms'], 1, 1, ' ms')}")
    lines.append("")

    title("7. A plugin under attack: Weir, 2 workers; the plain route while connections "
          "send requests that make another route's plugin spin to its 10 ms deadline")
    rows = []
    for r in s["attack"]:
        if not r["rps"]:
            rows.append([r["target"], ("FAILED: " + r["failures"][0][:120]) if r["failures"]
                         else "not run", "", "", "", ""])
            continue
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["attacker_statuses"].items()))
        rows.append([r["target"], fmt_spread(r["rps"]), fmt_ratio(r["rps_vs_alone"]),
                     fmt_spread(r["p99_us"], 1e-3, 2), fmt_ratio(r["p99_vs_alone"]),
                     answers or "-"])
    table(["attack", "req/s", "req/s vs alone", "p99 ms", "p99 vs alone",
           "plugin route answers (status: count)"], rows)

    title("8. TLS to the clients: TLS 1.3, the same ECDSA P-256 certificate for every proxy; "
          "the upstream stays plain HTTP")
    for c in s["tls_checks"]:
        lines.append(("* " if markdown else "") + f"{c['target']}: {c['protocol']}, {c['cipher']}, {c['signature']} signature, "
                     f"key exchange {c['key_exchange']}, ALPN {c['alpn_h2']} (h2 and http/1.1 "
                     f"offered), session resumption {'works' if c['resumed'] else 'FAILS'}")
    lines.append("")
    throughput_table("tls")
    title(f"8b. New TLS connections, a full handshake and one request each, Connection: close "
          f"(openssl s_time -new, {STIME_CLIENTS} processes)")
    handshake_table("tls-new")
    title(f"8c. Resumed TLS connections, one request each, Connection: close "
          f"(openssl s_time -reuse, {STIME_CLIENTS} processes)")
    handshake_table("tls-resumed")
    title(f"8d. {results['meta']['mode']['idle_conns']:,} idle TLS client connections "
          "(a handshake and one request each): RSS")
    idle_table(s["tls_idle"])

    def h2_table(group):
        header = ["proxy", "req/s", "p50 ms", "p99 ms", "CPU us/req", "CPU vs nginx",
                  "CPU vs HAProxy", "CPU vs the better", "proxy busy", "upstream CPU us/req",
                  "upstream conns"]
        rows, notes = [], []
        for r in s["throughput"]:
            if r["group"] != group and not (r["group"] == "h2" and r["target"] == "all"
                                            and r.get("skipped")):
                continue
            if r.get("skipped") or not r["ok_runs"]:
                # The reason below the table: it would widen a column.
                why = r.get("skipped") or "FAILED: " + r["failures"][0]
                rows.append([r["target"], why.split(":")[0] + " (below)"] + [""] * (len(header) - 2))
                notes.append(f"{r['target']}: {why}")
                continue
            busy = r.get("proxy_busy")
            rows.append([r["target"] + ("" if not r["failures"] else f" ({len(r['failures'])} failed)"),
                         fmt_spread(r["rps"]), fmt_spread(r["p50_us"], 1e-3, 2),
                         fmt_spread(r["p99_us"], 1e-3, 2),
                         fmt_spread(r["proxy_cpu_us_per_req"], 1, 2),
                         fmt_ratio(r["proxy_cpu_us_per_req_vs_nginx"]),
                         fmt_ratio(r.get("proxy_cpu_us_per_req_vs_haproxy")),
                         fmt_ratio(r.get("proxy_cpu_us_per_req_vs_best")),
                         fmt_spread(busy, 100, 0, " %") if busy else "-",
                         fmt_spread(r["upstream_cpu_us_per_req"], 1, 2),
                         fmt_spread(r.get("upstream_conns")) if r.get("upstream_conns") else "-"])
        if rows:
            table(header, rows)
        else:
            lines.append("not run")
            lines.append("")
        for n in notes:
            lines.append(("* " if markdown else "") + n)
        if notes:
            lines.append("")

    h2_mode = f"h2load -t1 -c{H2LOAD_CLIENTS} -m{H2LOAD_STREAMS}, {m['duration']}s per run"
    title(f"9. HTTP/2 end to end: h2c clients ({h2_mode}), GET / to an HTTP/2 upstream "
          "(nginx, h2c)")
    for c in s.get("h2_checks", []):
        if c["group"] == "h2" and c["target"] != "direct":
            lines.append(("* " if markdown else "") + f"{c['target']}: upstream saw "
                         f"{c['upstream_saw']}")
    if any(c["group"] == "h2" for c in s.get("h2_checks", [])):
        lines.append("")
    h2_table("h2")
    title(f"10. gRPC unary: POST {configs.GRPC_PATH} ({len(configs.grpc_message())}-byte message, "
          f"echoed) to a tonic upstream (h2c), {h2_mode}")
    for c in s.get("h2_checks", []):
        if c["group"] == "grpc" and c["target"] != "direct":
            g = c.get("grpcio") or {}
            lines.append(("* " if markdown else "") + f"{c['target']}: trailers "
                         f"{c.get('trailers')}, grpcio call "
                         f"{g.get('code') or g.get('skipped')}; upstream saw {c['upstream_saw']}")
    if any(c["group"] == "grpc" for c in s.get("h2_checks", [])):
        lines.append("")
    h2_table("grpc")

    obs = s.get("observe") or {}
    cg_warm, cg_n = CALLGRIND_REQUESTS[m["name"]] if m.get("name") in CALLGRIND_REQUESTS \
        else (None, None)
    title(f"11. Observability cost: Weir with metrics, a JSON access log to a file, W3C tracing, "
          f"against all of it off; nginx without and with its access log (keep-alive, "
          f"wrk -c{m['conns']}, {m['duration']}s per run; callgrind: {cg_n} requests after "
          f"{cg_warm}, wrk -c{CALLGRIND_CONNS})")
    cg = {r["target"]: r for r in obs.get("callgrind", [])}
    ir_delta = obs.get("ir_delta_vs_off", {})
    header = ["variant", "req/s", "p50 ms", "p99 ms", "CPU us/req", "user CPU us/req",
              "CPU vs nginx", "CPU delta", "instructions/req", "instructions delta"]
    rows, notes = [], []
    shown = ["weir off", "weir metrics", "weir metrics+log", OFF_WITH_HEADER, "weir tracing",
             TRACING_NO_HEADER, "nginx", "nginx log"]
    for r in sorted((r for r in s["throughput"] if r["group"] == "observe"),
                    key=lambda r: shown.index(r["target"]) if r["target"] in shown else 99):
        if unmeasured_row(r, header, rows, notes):
            continue
        delta, instr = delta_cells(r, cg, notes)
        idelta = ir_delta.get(r["target"])
        rows.append([r["target"] + ("" if not r["failures"] else f" ({len(r['failures'])} failed)"),
                     fmt_spread(r["rps"]), fmt_spread(r["p50_us"], 1e-3, 2),
                     fmt_spread(r["p99_us"], 1e-3, 2),
                     fmt_spread(r["proxy_cpu_us_per_req"], 1, 2),
                     fmt_spread(r.get("proxy_user_cpu_us_per_req"), 1, 2),
                     fmt_ratio(r["proxy_cpu_us_per_req_vs_nginx"]), delta, instr,
                     "-" if idelta is None else f"{idelta:+,.0f}" + (
                         "" if observe_base(r["target"]) == "weir off"
                         else f" vs {observe_base(r['target'])}")])
    if rows:
        table(header, rows)
    else:
        lines.append("not run")
        lines.append("")
    bullet = "* " if markdown else ""
    for n in notes:
        lines.append(bullet + n)
    if obs.get("callgrind_skipped"):
        lines.append(bullet + f"callgrind: {obs['callgrind_skipped']}")
    for c in obs.get("checks", []):
        if "log_line" in c:
            lines.append(bullet + f"{c['target']}: one line per request, fields "
                         f"{', '.join(c['log_line'])}")
        if "traceparent_upstream" in c:
            lines.append(bullet + f"{c['target']}: client sent traceparent "
                         f"{c['traceparent_sent']}, the upstream received "
                         f"{c['traceparent_upstream']}; without one it received "
                         f"{c['traceparent_upstream_no_header']}")
    ns = obs.get("ns_per_user_instruction")
    if ns:
        lines.append(bullet + f"a user-space instruction costs {fmt_spread(ns, 1, 3, ' ns')} "
                     "here (Weir off's user CPU per request over its instructions per request, "
                     "by round): the goals convert an instruction delta to time with the median")
    if any(r["group"] == "observe" for r in s["throughput"]):
        lines.append("")

    au = s.get("auth") or {}
    title(f"12. Forward authentication: Weir with api-key, with ext-auth answering from its "
          f"decision cache and asking the service on every request; nginx with auth_request to "
          f"the same service (keep-alive, wrk -c{m['conns']}, {m['duration']}s per run; "
          f"callgrind: {cg_n} requests after {cg_warm}, wrk -c{CALLGRIND_CONNS})")
    cg = {r["target"]: r for r in au.get("callgrind", [])}
    header = ["variant", "req/s", "p50 ms", "p99 ms", "CPU us/req", "user CPU us/req",
              f"CPU vs {AUTH_NGINX}", "CPU delta", "service calls/req", "service CPU us/req",
              "instructions/req", "instructions delta"]
    rows, notes = [], []
    for r in sorted((r for r in s["throughput"] if r["group"] == "auth"),
                    key=lambda r: AUTH_ORDER.index(r["target"]) if r["target"] in AUTH_ORDER
                    else 99):
        if unmeasured_row(r, header, rows, notes):
            continue
        delta, instr = delta_cells(r, cg, notes)
        idelta = au.get("ir_delta", {}).get(r["target"])
        rows.append([r["target"] + ("" if not r["failures"] else f" ({len(r['failures'])} failed)"),
                     fmt_spread(r["rps"]), fmt_spread(r["p50_us"], 1e-3, 2),
                     fmt_spread(r["p99_us"], 1e-3, 2),
                     fmt_spread(r["proxy_cpu_us_per_req"], 1, 2),
                     fmt_spread(r.get("proxy_user_cpu_us_per_req"), 1, 2),
                     fmt_ratio(r["proxy_cpu_us_per_req_vs_nginx"]), delta,
                     fmt_spread(r.get("auth_calls_per_req"), 1, 3),
                     fmt_spread(r.get("auth_cpu_us_per_req"), 1, 2), instr,
                     "-" if idelta is None else
                     f"{idelta:+,.0f} vs {AUTH_DELTA_BASE[r['target']]}"])
    if rows:
        table(header, rows)
    else:
        lines.append("not run")
        lines.append("")
    for n in notes:
        lines.append(bullet + n)
    if au.get("callgrind_skipped"):
        lines.append(bullet + f"callgrind: {au['callgrind_skipped']}")
    for c in au.get("checks", []):
        lines.append(bullet + f"{c['target']}: service calls {c['calls_first']} for the first "
                     f"request with the key, {c[f'calls_next_{AUTH_PROBES}']} for the next "
                     f"{AUTH_PROBES}; the upstream saw {c['upstream_saw']}")
    for c in au.get("callgrind", []):
        if c["status"] == "ok" and c.get("auth_calls") is not None:
            lines.append(bullet + f"{c['target']}, callgrind: {c['auth_calls']} service calls "
                         f"for {c['requests']} requests")
    ns = au.get("ns_per_user_instruction")
    if ns:
        lines.append(bullet + f"a user-space instruction costs {fmt_spread(ns, 1, 3, ' ns')} "
                     "here (api-key's user CPU per request over its instructions per request, "
                     "by round): the cached goal converts an instruction delta to time with the "
                     "median")
    if any(r["group"] == "auth" for r in s["throughput"]):
        lines.append("")

    fl = s.get("fleet") or {}
    lim = configs.FLEET_LIMIT
    acc_s = ACC_SECONDS.get(m.get("name"), "?")
    title(f"13. Fleet-wide state through Redis: the rate-limit plugin with its bucket in the "
          f"gateway (local), fleet-wide in sync mode ({FLEET_SYNC_INTERVAL}) and in strict mode "
          f"(a Redis round trip per request), a limit nothing reaches (keep-alive, "
          f"wrk -c{m['conns']}, {m['duration']}s per run; callgrind: {cg_n} requests after "
          f"{cg_warm}, wrk -c{CALLGRIND_CONNS})")
    cg = {r["target"]: r for r in fl.get("callgrind", [])}
    header = ["variant", "req/s", "p50 ms", "p99 ms", "CPU us/req", "user CPU us/req",
              "CPU vs local", "CPU delta", "Redis scripts/req", "Redis CPU us/req",
              "instructions/req", "instructions delta"]
    rows, notes = [], []
    for r in sorted((r for r in s["throughput"] if r["group"] == "fleet"),
                    key=lambda r: FLEET_ORDER.index(r["target"]) if r["target"] in FLEET_ORDER
                    else 99):
        if unmeasured_row(r, header, rows, notes):
            continue
        delta, instr = delta_cells(r, cg, notes)
        idelta = fl.get("ir_delta", {}).get(r["target"])
        redis = r.get("redis_cmds_per_req")
        rows.append([r["target"] + ("" if not r["failures"] else f" ({len(r['failures'])} failed)"),
                     fmt_spread(r["rps"]), fmt_spread(r["p50_us"], 1e-3, 2),
                     fmt_spread(r["p99_us"], 1e-3, 2),
                     fmt_spread(r["proxy_cpu_us_per_req"], 1, 2),
                     fmt_spread(r.get("proxy_user_cpu_us_per_req"), 1, 2),
                     fmt_ratio(r["proxy_cpu_us_per_req_vs_nginx"]), delta,
                     fmt_spread(redis, 1, 4) if redis else "-",
                     fmt_spread(r.get("redis_cpu_us_per_req"), 1, 2) if redis else "-", instr,
                     "-" if idelta is None else
                     f"{idelta:+,.0f} vs {FLEET_DELTA_BASE[r['target']]}"])
    if rows:
        table(header, rows)
    else:
        lines.append("not run")
        lines.append("")
    for n in notes:
        lines.append(bullet + n)
    if fl.get("callgrind_skipped"):
        lines.append(bullet + f"callgrind: {fl['callgrind_skipped']}")
    for c in fl.get("checks", []):
        counted = fmt_counters(c.get("counters", {}))
        lines.append(bullet + f"{c['target']}: RateLimit-Limit {c['ratelimit_limit']}; "
                     f"{FLEET_PROBES} requests: {counted}"
                     + (f"; Redis ran {c['redis_scripts']} scripts" if "redis_scripts" in c
                        else ""))
    for c in fl.get("callgrind", []):
        if c["status"] == "ok" and c.get("redis_cmds") is not None:
            lines.append(bullet + f"{c['target']}, callgrind: Redis ran {c['redis_cmds']} "
                         f"scripts for {c['requests']} requests")
    ns = fl.get("ns_per_user_instruction")
    if ns:
        lines.append(bullet + f"a user-space instruction costs {fmt_spread(ns, 1, 3, ' ns')} "
                     "here (local's user CPU per request over its instructions per request, "
                     "by round): the sync goal converts an instruction delta to time with the "
                     "median")
    if rows:
        lines.append("")

    title(f"13b. Admission accuracy: {ACC_NODES} gateways (each its own process and port), "
          f"h2load --h1 -c{ACC_CLIENTS} --rps {ACC_RPS_PER_NODE // ACC_CLIENTS} to each "
          f"({ACC_NODES * ACC_RPS_PER_NODE} requests/s offered in all) for {acc_s}s, one client "
          f"IP, a fleet-wide limit of capacity {lim['capacity']} and "
          f"{lim['refill_per_second']}/s")
    header = ["variant", "offered req/s", "elapsed s", "requests", "admitted (2xx)",
              "refused (429)", f"limit ({lim['capacity']} + {lim['refill_per_second']}/s x "
              "elapsed)", "admitted / limit", "admitted per node", "p50 ms", "p99 ms"]
    rows, notes = [], []
    for a in fl.get("accuracy", []):
        if not a["ok_runs"]:
            rows.append([a["target"], "FAILED (below)"] + [""] * (len(header) - 2))
        else:
            per_node = "; ".join("/".join(str(x) for x in n) for n in a["per_node_admitted"])
            rows.append([a["target"] + ("" if not a["failures"] else
                                        f" ({len(a['failures'])} failed)"),
                         fmt_spread(a["offered_rps"]), fmt_spread(a["elapsed_s"], 1, 2),
                         fmt_spread(a["requests"]), fmt_spread(a["admitted"]),
                         fmt_spread(a["refused_429"]), fmt_spread(a["allowance"]),
                         fmt_spread(a["ratio"], 1, 3, "x"), per_node,
                         fmt_spread(a["p50_us"], 1e-3, 2), fmt_spread(a["p99_us"], 1e-3, 2)])
        for f, ratio in zip(a["failures"], a["failed_ratios"]):
            notes.append(f"{a['target']}: " + (f"(admitted / limit {ratio:.3f}x) "
                                               if ratio is not None else "") +
                         " ".join(f.split())[:600])
    if rows:
        table(header, rows)
    else:
        lines.append(fl.get("accuracy_skipped") or "not run")
        lines.append("")
    for n in notes:
        lines.append(bullet + n)
    for a in fl.get("accuracy", []):
        if a["mode"]:
            for rnd, per_s in a.get("admitted_per_s", []):
                if per_s:
                    notes_s = " ".join(str(x) for x in per_s)
                    lines.append(bullet + f"{a['target']}, round {rnd}: admitted per second "
                                 f"(from the first request; the last second partial): {notes_s}")
    formed = [a for a in fl.get("accuracy", []) if a.get("fleet_formed_s")]
    if formed:
        lines.append(bullet + "each run: fresh gateways, a Redis key prefix of its own; the load "
                     "starts once every gateway's last round saw all " + str(ACC_NODES) +
                     " (" + ", ".join(f"{a['target']}: after "
                                      f"{fmt_spread(a['fleet_formed_s'], 1, 2, ' s')}"
                                      for a in formed) +
                     f") and {ACC_SETTLE_S:.0f} s idle")
    if fl.get("accuracy") or notes:
        lines.append("")

    outs = fl.get("outage", [])
    if outs or fl.get("accuracy"):
        o_s, kill_at, restart_at = OUT_TIMES.get(m.get("name"), ("?", "?", "?"))
        share_cap = -(-lim["capacity"] // ACC_NODES)
        share_refill = -(-lim["refill_per_second"] // ACC_NODES)
        per_w = OUT_RATE_SLACK * lim["refill_per_second"] * OUT_WINDOW_S
        title(f"13c. Redis killed and restarted: the load of 13b for {o_s}s, "
              f'fleet_fallback = "local" (fail-open), Redis SIGKILLed {kill_at:g}s into the load '
              f"and started again on its port (empty) at {restart_at:g}s")
        header = ["variant", "offered req/s", "requests", "failed (not 2xx/429), by round",
                  "h2load errored, timeout", "admitted (2xx)", "refused (429)",
                  "Redis down s", "admitted while down",
                  f"fallback allowance ({ACC_NODES} x ({share_cap} + {share_refill}/s x down))",
                  "while down / allowance",
                  f"recovery ms (goal <= {OUT_SYNC_INTERVALS * FLEET_SYNC_INTERVAL_S * 1000:.0f})",
                  "last gateway reachable ms",
                  "outages per node", "local fallbacks per node"]
        rows, notes = [], []
        for o in outs:
            if not o["ok_runs"]:
                rows.append([o["target"], "FAILED (below)"] + [""] * (len(header) - 2))
            else:
                rec_vals = ["never" if v is None else f"{v:.0f}" for v in o["recovery_by_round"]]
                fbr = o["failed_by_round"]
                rows.append([o["target"] + ("" if not o["failures"] else
                                            f" ({len(o['failures'])} failed)"),
                             fmt_spread(o["offered_rps"]), fmt_spread(o["requests"]),
                             "/".join(str(x[0]) for x in fbr),
                             "/".join(str(x[1]) for x in fbr) + ", "
                             + "/".join(str(x[2]) for x in fbr),
                             fmt_spread(o["admitted"]), fmt_spread(o["refused_429"]),
                             fmt_spread(o["redis_down_s"], 1, 2),
                             fmt_spread(o["admitted_while_down"]),
                             fmt_spread(o["fallback_allowance"]),
                             fmt_spread(o["while_down_ratio"], 1, 3, "x"),
                             "/".join(rec_vals) + " by round",
                             "/".join("?" if v is None else str(v)
                                      for v in o["last_reachable_by_round"]),
                             "; ".join("/".join(str(x) for x in n)
                                       for n in o["per_node_outages"]),
                             "; ".join("/".join(str(x) for x in n)
                                       for n in o["per_node_fallbacks"])])
            for f in o["failures"]:
                notes.append(f"{o['target']}: " + " ".join(f.split())[:600])
            for rnd, st in o["other_statuses"]:
                notes.append(f"{o['target']}, round {rnd}: answers neither 2xx nor 429 "
                             f"(status: count; -1 is a failed stream): {st}")
        if rows:
            table(header, rows)
        else:
            lines.append(fl.get("accuracy_skipped") or "not run")
            lines.append("")
        for n in notes:
            lines.append(bullet + n)
        for o in outs:
            for (rnd, wins), (_, noticed), (_, reach) in zip(o["windows"], o["noticed_ms"],
                                                             o["reachable_ms"]):
                lines.append(bullet + f"{o['target']}, round {rnd}: admitted per "
                             f"{OUT_WINDOW_S * 1000:.0f} ms from Redis accepting again: "
                             + " ".join(str(x) for x in wins))
                lines.append(bullet + f"{o['target']}, round {rnd}: each gateway's log: Redis "
                             "cannot be reached +" + "/".join("?" if x is None else str(x)
                                                             for x in noticed)
                             + " ms after the kill, reachable +"
                             + "/".join("?" if x is None else str(x) for x in reach)
                             + " ms after Redis accepted again")
            for rnd, per_s in o["admitted_per_s"]:
                if per_s:
                    lines.append(bullet + f"{o['target']}, round {rnd}: admitted per second "
                                 f"(from the first request; the last second partial): "
                                 + " ".join(str(x) for x in per_s))
        if outs:
            lines.append(bullet + "failed: anything h2load counted neither 2xx nor 429 (its "
                         "`failed` less the 429s: errors, timeouts and lost streams "
                         "included); down: from the SIGKILL to the first PING the restarted "
                         f"Redis answered (polled every {OUT_REDIS_POLL_S * 1000:.0f} ms), "
                         "admitted while down by request start; recovery: from that PING to "
                         f"the first {OUT_WINDOW_S * 1000:.0f} ms window from which any n "
                         f"windows in a row admit <= {lim['capacity']} + {per_w:.0f} x n "
                         f"(a bucket of the limit's capacity refilled at "
                         f"{OUT_RATE_SLACK:.2f}x; 0: from the first window); last gateway "
                         "reachable: from that PING to the last gateway's `Redis reachable` "
                         "in its log, by round; counters from each gateway's /metrics over "
                         "the run")
            lines.append("")

    title("Goals (Weir vs nginx, and for HTTP/2 and gRPC the better of nginx and HAProxy; "
          "same run)")
    table(["goal", "status", "detail"],
          [[g["goal"], g["status"], g["detail"]] for g in results["goals"]])
    return "\n".join(lines)


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"nproc": os.cpu_count(), "cpu_model": model, "mem_total": mem,
            "kernel": platform.release(), "loadavg_at_start": load}


def versions():
    out = {}
    for name, argv in (("nginx", ["nginx", "-v"]), ("haproxy", ["haproxy", "-v"]),
                       ("wrk", ["wrk", "-v"]), ("weir", [WEIR, "--version"]),
                       ("openssl", ["openssl", "version"]), ("h2load", ["h2load", "--version"]),
                       ("curl", ["curl", "--version"]),
                       ("redis", ["redis-server", "--version"])):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            out[name] = (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            out[name] = "?"
    try:
        out["weir_commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"],
                                            capture_output=True, text=True,
                                            timeout=10).stdout.strip()
        # Changes to the gateway's source not in that commit (the binary
        # is built from the work tree).
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "host", "sdk",
                                "Cargo.toml", "Cargo.lock"],
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
        out["weir_tree_changes"] = [x for x in dirty if x.strip()]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return out


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one round, short runs (about 4 minutes)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest.json"))
    ap.add_argument("--only", default="throughput,idle,startup,hotdeploy,attack,tls,h2,observe,"
                                      "auth,fleet",
                    help="comma-separated phases to run (throughput, idle, startup, hotdeploy, "
                         "attack, tls, h2, observe, auth, fleet)")
    ap.add_argument("--keep-workdir", action="store_true",
                    help="keep the generated configurations and logs")
    args = ap.parse_args()
    mode_name = "quick" if args.quick else "full"
    mode = dict(MODES[mode_name], name=mode_name)
    phases = set(args.only.split(","))

    if (os.cpu_count() or 1) < 2:
        sys.exit("bench: needs at least 2 CPUs (one for the proxy, one for load and upstream)")
    for tool in ("nginx", "haproxy", "wrk", "openssl") + (
            (("h2load", "curl") if "h2" in phases else ()) +
            (("h2load", "redis-server") if "fleet" in phases else ())):
        if shutil.which(tool) is None:
            sys.exit(f"bench: `{tool}` not found; run tests/bench/run.sh, which installs it")
    if not os.access(WEIR, os.X_OK):
        sys.exit(f"bench: {WEIR} missing; run tests/bench/run.sh, which builds it")

    # Children inherit these: 10,000 idle connections need the file limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {LOAD_CPU})

    started = time.monotonic()

    def log(msg):
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", flush=True)

    def on_alarm(signum, frame):
        raise BenchError(f"time budget of {mode['budget']}s exceeded")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(mode["budget"])

    workdir = tempfile.mkdtemp(prefix="weir-bench-")
    procs = Procs(os.environ.get("BENCH_PIDFILE"))
    results = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": " ".join(["tests/bench/run.sh"] + sys.argv[1:]),
            "mode": mode, "machine": machine(), "versions": versions(),
            "open_files_limit": hard,
            "layout": {"proxy_cpu": PROXY_CPU, "load_and_upstream_cpu": LOAD_CPU},
            "status": "running",
        },
        "runs": [], "skipped": [], "plain_deterministic": [], "plugin_deterministic": [],
        "close_deterministic": [],
        "idle": [], "startup": [],
        "hot_deploy": {"swap": [], "load": None, "startup": []},
        "attack": [], "tls_checks": [], "tls_idle": [], "h2_checks": [],
        "observe": {"checks": [], "callgrind": [], "callgrind_skipped": None},
        "auth": {"checks": [], "callgrind": [], "callgrind_skipped": None},
        "fleet": {"checks": [], "callgrind": [], "callgrind_skipped": None, "accuracy": [],
                  "outage": [], "accuracy_skipped": None},
    }
    bench = Bench(args, mode, workdir, procs)
    try:
        log(f"mode {mode_name}: {mode['rounds']} round(s), {mode['duration']}s runs; "
            f"workdir {workdir}")
        bench.start_upstream()
        if "throughput" in phases:
            log("throughput: plain, plugins, Connection: close; callgrind, strace and dhat "
                "of plain and of plugins")
            throughput_phase(bench, results, log)
        if "idle" in phases:
            log(f"idle: {mode['idle_conns']} keep-alive connections per proxy")
            idle_phase(bench, results, log)
        if "startup" in phases:
            log("start-up to first proxied response")
            startup_phase(bench, results, log)
        if "hotdeploy" in phases:
            log("hot deploy: rename -> first response, swaps under load, start-up with plugins")
            hot_deploy_phase(bench, results, log)
        if "attack" in phases:
            log("plugin attack: the plain route alone and while another route's plugin spins")
            attack_phase(bench, results, log)
        if "tls" in phases:
            log("tls: HTTPS keep-alive, full and resumed handshakes, idle TLS connections")
            tls_phase(bench, results, log)
        if "h2" in phases:
            log("h2: h2c clients (h2load) to an HTTP/2 upstream, GET and unary gRPC")
            h2_phase(bench, results, log)
        if "observe" in phases:
            log("observe: metrics, access log and tracing against all off; nginx's access log; "
                "callgrind")
            observe_phase(bench, results, log)
        if "auth" in phases:
            log("auth: api-key, ext-auth cached and calling on every request, nginx "
                "auth_request; callgrind")
            auth_phase(bench, results, log)
        if "fleet" in phases:
            log("fleet: rate-limit local, fleet sync and fleet strict through Redis; callgrind; "
                f"admission accuracy of {ACC_NODES} gateways sharing a limit; Redis killed and "
                "restarted under that load")
            fleet_phase(bench, results, log)
        results["meta"]["status"] = "complete"
    except (BenchError, KeyboardInterrupt) as e:
        results["meta"]["status"] = f"aborted: {e!r}"
        log(f"ABORTED: {e}")
    finally:
        signal.alarm(0)
        procs.stop_all()
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)

    summarize(results)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    md = os.path.splitext(args.out)[0] + ".md"
    with open(md, "w") as f:
        f.write(render(results, markdown=True) + "\n")
    print()
    print(render(results))
    print(f"raw figures: {args.out}\nmarkdown tables: {md}")
    return 0 if results["meta"]["status"] == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
