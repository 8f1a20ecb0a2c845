"""The CPU a benchmark ran on, for its report (no NumPy or torch import: safe before their threads are set)."""

from __future__ import annotations

import platform


def isa() -> str:
    """The CPU's model and the vector extensions it has (from /proc/cpuinfo), and torch's choice."""
    model, flags = platform.processor() or "?", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
    return f"{model}; {' '.join(f for f in wanted if f in flags) or 'no x86 vector flags found'}"
