"""Where a run happened, in a few words: ``describe_machine("cuda:0")`` -> ``"AMD EPYC 7R13 Processor
(AVX2), 16 cores, NVIDIA H100 80GB HBM3"`` (torch imported for a ``cuda`` device only). The vector
units tell apart machines that share a model name (an "AMD EPYC" VM may be a Zen 3 with AVX2 only
or a Zen 4 with AVX-512 VNNI and bf16), and they decide the CPU's speed here."""

import datetime
import os
import platform
import re

CPUINFO = "/proc/cpuinfo"
TEST_CPU_FLAGS_ENV = "UNET_INFER_TEST_CPU_FLAGS"  # a test hook: see cpu_flags


def cpuinfo_value(key, cpuinfo=CPUINFO):
    """The value of the first ``key`` line of ``cpuinfo`` (None: no such file or line)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                name, sep, value = line.partition(":")
                if sep and name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model(cpuinfo=CPUINFO):
    """The CPU's model name (``cpuinfo``'s "model name", else ``platform``'s), or ``"unknown CPU"``."""
    return " ".join((cpuinfo_value("model name", cpuinfo) or platform.processor() or platform.machine()
                     or "unknown CPU").split())


def forced_cpu_flags():
    """The flags ``UNET_INFER_TEST_CPU_FLAGS`` stands in for the CPU's (None: unset or blank)."""
    forced = os.environ.get(TEST_CPU_FLAGS_ENV, "").replace(",", " ").split()
    return set(forced) if forced else None


def cpu_flags(cpuinfo=None):
    """The ``flags`` line of ``cpuinfo`` (default: ``/proc/cpuinfo``, or the test hook's flags, so that
    the suite can play an AVX2-only or an AMX machine on any host: tests/conftest.py), or an empty set."""
    if cpuinfo is None:
        forced = forced_cpu_flags()
        if forced is not None:
            return forced
        cpuinfo = CPUINFO
    return set((cpuinfo_value("flags", cpuinfo) or "").split())


# (flag, what it is called) in the order a description names them
VECTOR_UNITS = (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx512_bf16", "bf16"))


def vector_units(flags):
    """``"AMX, AVX-512 VNNI, bf16"``, ``"AVX-512"``, ``"AVX2"`` ... from CPU flags (``""``: none known)."""
    units = [name for flag, name in VECTOR_UNITS if flag in flags]
    if not units:
        units = next(([name] for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("neon", "NEON"),
                                                ("asimd", "NEON")) if flag in flags), [])
    return ", ".join(units)


def gpu_name(device):
    """The name of the CUDA GPU ``device`` (``"cuda"``, ``"cuda:1"``, a torch.device) when CUDA is
    available, else None (never raises)."""
    match = re.fullmatch(r"cuda(?::(\d+))?", str(device).strip())
    if not match:
        return None
    index = int(match.group(1) or 0)
    try:
        import torch  # only for a cuda device: torch is slow to import and may be absent
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            return None
        return torch.cuda.get_device_name(index)
    except Exception:  # noqa: BLE001 - a description must never break the run it describes
        return None


def describe_machine(device=None, flags=None):
    """``"<CPU model> (<vector units>), <N> cores"``, plus ``", <GPU name>"`` for a usable CUDA ``device``."""
    cores = os.cpu_count() or 1
    units = vector_units(cpu_flags() if flags is None else flags)
    parts = [cpu_model() + (f" ({units})" if units else ""), f"{cores} core" + ("" if cores == 1 else "s")]
    gpu = gpu_name(device)
    return ", ".join(parts + ([gpu] if gpu else []))


def today():
    """Today's date, ``YYYY-MM-DD`` (local time)."""
    return datetime.date.today().isoformat()
