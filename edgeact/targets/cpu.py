"""Which integer-kernel family a CPU runs, as far as the runtimes' codes depend on it.

onnxruntime (MLAS) picks its u8s8 conv/gemm kernel by CPU features: VNNI (AVX-VNNI, AVX-512 VNNI) and AMX
accumulate u8×s8 products exactly in int32; AVX2 and AVX-512BW without VNNI use VPMADDUBSW, which saturates
pairs of products to int16; SSE4.1 widens to int16 first (exact); aarch64 is exact. U8U8 kernels (edgeact's
default weights) are exact on all of them. The family is read from /proc/cpuinfo flags (Linux) or the machine.
"""
from __future__ import annotations

import os

# family → does onnxruntime's u8s8 kernel saturate pairs of products to int16 there?
SATURATES_U8S8 = {"x86-vnni": False, "x86-avx512bw": True, "x86-avx2": True, "x86-sse4": False,
                  "aarch64": False, "armv7": False, "unknown": False}
DESCRIPTION = {
    "x86-vnni": "x86-64 with VNNI (u8s8 products summed exactly in int32)",
    "x86-avx512bw": "x86-64 AVX-512BW without VNNI (u8s8 pairs saturate to int16, VPMADDUBSW)",
    "x86-avx2": "x86-64 AVX2 (u8s8 pairs saturate to int16, VPMADDUBSW)",
    "x86-sse4": "x86-64 SSE4 (u8s8 products widened to int16, exact)",
    "aarch64": "aarch64 (exact int32 dot products; LiteRT's NEON HARD_SWISH and XNNPACK's fixed-point MUL: "
               "backend litert:aarch64)",
    "armv7": "32-bit ARM (tflite-runtime 2.14's builtin NEON kernels: backend tflite-runtime:armv7)",
    "unknown": "an unrecognised CPU",
}


# MLAS's dispatch families (edgeact.backend.x86_kernel_family) → the families whose ORT int8 codes differ.
_BY_MLAS_FAMILY = {"amx": "x86-vnni", "avx512-vnni": "x86-vnni", "avx-vnni": "x86-vnni", "avx512bw": "x86-avx512bw",
                   "avx2": "x86-avx2", "sse4": "x86-sse4", "unknown": "unknown"}


def family_from_flags(flags: set[str] | None = None) -> str:
    """The x86-64 kernel family for a set of /proc/cpuinfo flags (None: this machine's), as far as ORT's
    int8 codes differ."""
    from edgeact.backend import x86_kernel_family

    return _BY_MLAS_FAMILY[x86_kernel_family(flags)]


def host_family() -> str:
    """This machine's kernel family. `$EDGEACT_CPU_FAMILY` overrides it: qemu-x86_64 shows the emulated
    process the host's /proc/cpuinfo, so edgeact sets it for what it runs under an emulated CPU."""
    from edgeact.backend import host_cpu

    override = os.environ.get("EDGEACT_CPU_FAMILY")
    if override in SATURATES_U8S8:
        return override
    cpu = host_cpu()
    return family_from_flags() if cpu == "x86-64" else cpu


def target_family(target) -> str:
    """The kernel family a Target runs (emulated CPUs know theirs; the host reads its flags)."""
    fam = getattr(target, "family", None)
    if fam:
        return fam
    name = getattr(target, "name", "host")
    if name.startswith("qemu-aarch64"):
        return "aarch64"
    if name.startswith("qemu-armv7") or name.startswith("qemu-arm"):
        return "armv7"
    if name == "host":
        return host_family()
    return "unknown"  # a board over SSH: its flags are not read here


__all__ = ["host_family", "family_from_flags", "target_family", "SATURATES_U8S8", "DESCRIPTION"]
