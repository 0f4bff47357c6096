"""Which ONNX Runtime execution providers to ask for on this machine.

onnxruntime-gpu lists CUDAExecutionProvider as available whether or not the machine has a GPU,
and a session asked for it on a machine without one prints errors about libcuda.so.1 before it
falls back to the CPU. So CUDA is asked for only when the CUDA driver loads and sees a device.
"""

from __future__ import annotations

import ctypes
import logging

import onnxruntime as ort

log = logging.getLogger("stra_face.providers")


def cuda_devices() -> tuple[int, str]:
    """(number of CUDA devices, why none) from the driver API, without importing a CUDA toolkit."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0, "no CUDA driver (libcuda.so.1 not found)"
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0, "the CUDA driver reports no usable device"
    return count.value, "" if count.value else "the CUDA driver reports no device"


def select_providers(requested: list[str]) -> list[str]:
    """The requested providers this machine can run, in order; logs one line saying which and why."""
    available = ort.get_available_providers()
    chosen, skipped = [], []
    for provider in requested:
        if provider not in available:
            skipped.append(f"{provider} (not in this onnxruntime build)")
        elif provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider") and (reason := cuda_devices()[1]):
            skipped.append(f"{provider} ({reason})")
        else:
            chosen.append(provider)
    chosen = chosen or ["CPUExecutionProvider"]
    log.info("ONNX Runtime providers: %s%s", ", ".join(chosen), f"; skipped: {', '.join(skipped)}" if skipped else "")
    return chosen
