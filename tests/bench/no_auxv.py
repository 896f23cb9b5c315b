#!/usr/bin/env python3
"""Runs a command with `prctl(PR_GET_AUXV)` refused (EINVAL), so that Weir
with plugins can run under valgrind:

    python3 no_auxv.py valgrind --tool=callgrind ... weir run -c FILE

Weir reads a thread's CPU clock for a plugin call's deadline through
rustix, whose vDSO lookup asks the kernel for the aux vector with
`prctl(PR_GET_AUXV)` (Linux >= 6.4). Valgrind 3.19 passes that call to the
kernel, which answers valgrind's own aux vector, and the lookup then reads
an address the client does not map: Weir dies at its first plugin call
(rustix issue 1559). Refused, rustix reads /proc/self/auxv instead, which
valgrind answers for its client. A seccomp filter, installed here and
kept across the exec (no_new_privs, as an unprivileged filter needs),
refuses that one call and nothing else. x86-64 and aarch64 only.
"""

import ctypes
import os
import platform
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_GET_AUXV = 0x41555856
EINVAL = 22

# (AUDIT_ARCH_*, the prctl syscall's number)
ARCHES = {"x86_64": (0xC000003E, 157), "aarch64": (0xC00000B7, 167)}

# Classic BPF: load a word of struct seccomp_data, jump if equal, return.
LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
# struct seccomp_data: nr (0), arch (4), instruction_pointer (8), args (16):
# the low half of args[0] on these little-endian machines.
NR, ARCH, ARG0 = 0, 4, 16


def program(arch, nr_prctl):
    """prctl(PR_GET_AUXV, ...) -> EINVAL; every other call allowed."""
    insns = [
        (LD_W_ABS, 0, 0, ARCH),
        (JEQ_K, 0, 5, arch),         # another ABI: allow
        (LD_W_ABS, 0, 0, NR),
        (JEQ_K, 0, 3, nr_prctl),     # not prctl: allow
        (LD_W_ABS, 0, 0, ARG0),
        (JEQ_K, 0, 1, PR_GET_AUXV),  # another option: allow
        (RET_K, 0, 0, SECCOMP_RET_ERRNO | EINVAL),
        (RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return b"".join(struct.pack("=HBBI", *i) for i in insns), len(insns)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    machine = platform.machine()
    if machine not in ARCHES:
        sys.exit(f"no_auxv.py: {machine} is not supported (x86_64, aarch64)")
    code, n = program(*ARCHES[machine])
    buf = ctypes.create_string_buffer(code, len(code))
    prog = SockFprog(n, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                           ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0 or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
        sys.exit(f"no_auxv.py: installing the filter failed: {os.strerror(ctypes.get_errno())}")
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
