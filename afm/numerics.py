"""Floating point at full speed: subnormal numbers flushed to zero on the CPU.

Training meets subnormal float32 values (|x| < 1.2e-38) as it goes: the softmax's far tails,
Adagrad's accumulators and the updates of rarely seen features. x86 CPUs compute with them
through a microcode assist that is 10-100x slower per operation, and real epochs on Frappe ran
3-11x slower for it on the machine where that was found (on this project's AMD EPYC the cost was
small: docs/benchmarks.md, "Subnormal floats"). Flushing them (the FTZ and DAZ bits of MXCSR, what
`torch.set_flush_denormal` sets; FZ on ARM) changes a value only where it is below 1.2e-38, i.e.
where float32 has already lost most of its precision; results agree to float32 rounding
(tests/test_numerics.py). GPUs compute with subnormals at full speed: nothing to do there.

Where it is set, and why there. The flag belongs to a thread, and a thread's OpenMP workers copy
it from that thread when they start (at its first parallel operation) and keep it. It also
changes the thread's own Python and NumPy arithmetic, so a library must not leave it set in its
caller's thread. Hence:
- at import (this module, imported by afm.models): this thread's workers are started with the
  flag, then the thread itself is put back as it was. Workers only ever run PyTorch's intra-op
  work, so from then on the heavy part of every parallel operation flushes;
- around each call that computes, for the calling thread itself (`full_speed_floats`):
  `train_model`, `afm.inference.outputs` (every scoring path) and every command of the CLI;
- for good where the thread is ours: each run of the app's script (Streamlit gives each rerun a
  thread of its own, whose workers start after) and each training job's thread (afm.app.jobs).
A thread whose workers started before any of this keeps them as they were: `train_model` checks
and warns (call `torch.set_flush_denormal(True)` first in such a thread, or import afm earlier).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

SMALLEST_NORMAL = torch.finfo(torch.float32).tiny  # 1.1755e-38
_SUBNORMAL_BITS = 0x00200000  # the float32 with these bits is 2.9e-39, a subnormal
_GRAIN = 32_768  # elements ATen gives each worker at least (at::internal::GRAIN_SIZE)


def flush_subnormals() -> bool:
    """Flush subnormals in this thread and the workers it starts from now on. False where the
    processor has no such mode (then nothing changes)."""
    return torch.set_flush_denormal(True)


def subnormals_flushed() -> bool:
    """Whether this thread and every one of its intra-op workers flush subnormals: one parallel
    operation over a subnormal tensor that every worker takes a share of."""
    # Made from its bit pattern: a float written while flushing would already be zero.
    probe = torch.full((2 * _GRAIN * torch.get_num_threads(),), _SUBNORMAL_BITS, dtype=torch.int32)
    return not bool((probe.view(torch.float32) * 0.5).any())


def warn_if_workers_keep_subnormals() -> bool:
    """With the flag set in this thread: check that its workers took it too; warn when they could
    not (they started before it was set, and keep their old mode). True when all flush."""
    if subnormals_flushed():
        return True
    warnings.warn("this thread's PyTorch workers started before afm set subnormal flushing, so training may run "
                  "several times slower; call torch.set_flush_denormal(True) before any other torch work in "
                  "this thread", RuntimeWarning, stacklevel=4)
    return False


def flushes_here() -> bool:
    """Whether this thread itself flushes (a tensor below ATen's parallel grain stays on it)."""
    probe = torch.full((1,), _SUBNORMAL_BITS, dtype=torch.int32)
    return not bool((probe.view(torch.float32) * 0.5).any())


@contextmanager
def full_speed_floats() -> Iterator[None]:
    """Flush subnormals for the body, then leave this thread as it was. Use as `with` or as a
    decorator (each call of the decorated function gets its own scope)."""
    was = flushes_here()
    flush_subnormals()
    try:
        yield
    finally:
        if not was:
            torch.set_flush_denormal(False)


def _start_workers_flushing() -> None:
    """Start this thread's intra-op workers with the flag (a parallel operation makes them), then
    put the thread itself back as it was."""
    was = flushes_here()
    if flush_subnormals():
        subnormals_flushed()
        if not was:
            torch.set_flush_denormal(False)


_start_workers_flushing()
