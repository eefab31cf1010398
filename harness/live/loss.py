"""Packet loss on live links without netem: a tiny eBPF classifier on each node's interface.

This kernel (like many minimal ones) has no ``sch_netem`` and no ``act_gact``, but it has the
``clsact`` qdisc and the ``bpf`` classifier. The program below, attached in direct-action
mode to the ingress of a node's ``eth0``, drops each IPv4 packet with probability ``p``
(the kernel's ``bpf_get_prandom_u32``) and lets everything else (ARP, and IPv4 when the dice
say so) through. Only peer traffic crosses ``eth0``: the harness reaches a node's client port
through its loopback, so loss, like a partition, cuts between nodes only. Loss happens at the
receiving end of every link, for every packet (SYNs, data, ACKs): TCP retransmits, as over a
lossy network.

The program is 8 instructions, assembled here and loaded with the ``bpf(2)`` system call;
the filter is added and removed through netlink (``harness.live.rtnl``).
"""

from __future__ import annotations

import ctypes
import os
import struct

# bpf(2) (x86_64 and aarch64 numbers; other machines refuse loss with a reason).
SYSCALL_BPF = {"x86_64": 321, "aarch64": 280}
BPF_PROG_LOAD = 5
BPF_PROG_TYPE_SCHED_CLS = 3
# Instruction opcodes used below (linux/bpf.h, linux/bpf_common.h).
LDX_MEM_W = 0x61  # dst = *(u32 *)(src + off)
JNE_K = 0x55  # if dst != imm goto +off
CALL = 0x85
JGE32_K = 0x36  # if (u32)dst >= (u32)imm goto +off
MOV64_K = 0xB7  # dst = imm
EXIT = 0x95
FUNC_GET_PRANDOM_U32 = 7
SKB_PROTOCOL_OFFSET = 16  # offsetof(struct __sk_buff, protocol)
ETH_P_IP_BE = 0x0008  # htons(0x0800) as the little-endian u32 load sees it
TC_ACT_SHOT = 2
TC_ACT_UNSPEC = -1  # no verdict: the packet goes on
LOG_BYTES_MAX = 64 * 1024  # verifier log kept when a load fails


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def program(probability: float) -> bytes:
    """The classifier dropping IPv4 packets with ``probability`` (0 < p <= 1)."""
    assert 0.0 < probability <= 1.0, probability
    threshold = min(int(probability * 2**32), 2**32 - 1)
    signed = threshold - 2**32 if threshold >= 2**31 else threshold  # imm is an s32
    return b"".join([
        _insn(LDX_MEM_W, dst=0, src=1, off=SKB_PROTOCOL_OFFSET),
        _insn(JNE_K, dst=0, off=4, imm=ETH_P_IP_BE),      # not IPv4: to "pass"
        _insn(CALL, imm=FUNC_GET_PRANDOM_U32),
        _insn(JGE32_K, dst=0, off=2, imm=signed),          # the dice say keep: to "pass"
        _insn(MOV64_K, dst=0, imm=TC_ACT_SHOT),
        _insn(EXIT),
        _insn(MOV64_K, dst=0, imm=TC_ACT_UNSPEC),          # pass
        _insn(EXIT),
    ])


class _ProgLoad(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
        ("rest", ctypes.c_uint8 * 64),  # later fields of bpf_attr, all zero
    ]


def unavailable_reason() -> str | None:
    machine = os.uname().machine
    if machine not in SYSCALL_BPF:
        return f"loading the loss classifier needs bpf(2) on x86_64 or aarch64, not {machine}"
    return None


def load(probability: float) -> int:
    """A file descriptor of the loaded classifier (the caller closes it once attached)."""
    code = program(probability)
    insns = ctypes.create_string_buffer(code, len(code))
    license_text = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(LOG_BYTES_MAX)
    attr = _ProgLoad()
    attr.prog_type = BPF_PROG_TYPE_SCHED_CLS
    attr.insn_cnt = len(code) // 8
    attr.insns = ctypes.addressof(insns)
    attr.license = ctypes.addressof(license_text)
    attr.log_level = 1
    attr.log_size = LOG_BYTES_MAX
    attr.log_buf = ctypes.addressof(log)
    attr.prog_name = b"rh_loss"
    libc = ctypes.CDLL(None, use_errno=True)
    fd: int = libc.syscall(SYSCALL_BPF[os.uname().machine], BPF_PROG_LOAD,
                           ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        err = ctypes.get_errno()
        verifier = log.value.decode(errors="replace").strip().replace("\n", " | ")
        raise OSError(err, f"bpf(BPF_PROG_LOAD): {os.strerror(err)}; verifier: {verifier}")
    return fd
