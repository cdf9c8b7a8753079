"""Keep this process off Intel AMX, so XNNPACK runs int8 on its AVX512-VNNI kernels.

On Linux a process must ask the kernel for AMX tile state
(``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``) before it may use AMX; XNNPACK
asks once, when its first delegate starts, and falls back to VNNI kernels if refused.
:func:`deny_amx` installs a seccomp filter that refuses that one request (EPERM) and
allows every other system call. It cannot be undone for the process and its children,
so call it first thing in a benchmark's own process.

Imported by the scripts in this folder (run as ``python benchmarks/<name>.py``).
"""

from __future__ import annotations

import ctypes
import platform
import struct
import sys

SYS_ARCH_PRCTL = 158  # x86-64 system call number
ARCH_GET_XCOMP_PERM, ARCH_REQ_XCOMP_PERM = 0x1022, 0x1023
XFEATURE_XTILEDATA = 18
_AUDIT_ARCH_X86_64 = 0xC000003E
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_LOAD_WORD, _JUMP_IF_EQUAL, _RETURN = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
_ALLOW, _ERRNO_EPERM = 0x7FFF0000, 0x00050001  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
# Offsets in struct seccomp_data: nr 0, arch 4, args[0] 16.
_NR, _ARCH, _ARG0 = 0, 4, 16


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _instruction(code: int, jump_true: int, jump_false: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jump_true, jump_false, k)


def filter_program() -> bytes:
    """The classic-BPF seccomp program: EPERM for arch_prctl(ARCH_REQ_XCOMP_PERM, ...), allow the rest."""
    return b"".join(
        [
            _instruction(_LOAD_WORD, 0, 0, _ARCH),
            _instruction(_JUMP_IF_EQUAL, 1, 0, _AUDIT_ARCH_X86_64),
            _instruction(_RETURN, 0, 0, _ALLOW),
            _instruction(_LOAD_WORD, 0, 0, _NR),
            _instruction(_JUMP_IF_EQUAL, 0, 3, SYS_ARCH_PRCTL),
            _instruction(_LOAD_WORD, 0, 0, _ARG0),
            _instruction(_JUMP_IF_EQUAL, 0, 1, ARCH_REQ_XCOMP_PERM),
            _instruction(_RETURN, 0, 0, _ERRNO_EPERM),
            _instruction(_RETURN, 0, 0, _ALLOW),
        ]
    )


def amx_granted(libc) -> bool:
    """Whether this process already holds AMX tile state (then a filter comes too late)."""
    features = ctypes.c_uint64(0)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_GET_XCOMP_PERM, ctypes.byref(features)) != 0:
        return False  # a kernel without AMX support: nothing to deny
    return bool(features.value >> XFEATURE_XTILEDATA & 1)


def deny_amx() -> None:
    """Install the filter and check that the AMX request is now refused; raises if that fails."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise RuntimeError(f"denying AMX needs Linux on x86-64, not {sys.platform} on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    if amx_granted(libc):
        raise RuntimeError("this process already uses AMX: deny it before the first TFLite interpreter starts")
    code = filter_program()
    program = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(code) // 8, ctypes.addressof(program))
    if (
        libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        or libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0
    ):
        raise OSError(ctypes.get_errno(), "could not install the seccomp filter that denies AMX")
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != -1:
        raise RuntimeError("the seccomp filter is installed but the AMX request still succeeds")
