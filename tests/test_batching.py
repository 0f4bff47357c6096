"""Micro-batching of concurrent requests, and threshold selection."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from stra_face.vision.inference import MicroBatcher, Overloaded
from stra_face.vision.thresholds import Calibration


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_model_calls_and_get_their_own_rows():
    calls = []

    def model(items: np.ndarray, scale: float) -> np.ndarray:
        calls.append(len(items))
        time.sleep(0.02)  # a model call takes time; requests pile up meanwhile
        return items * scale

    async def scenario():
        batcher = MicroBatcher(model, max_size=16, max_wait_ms=20, queue_size=1000)
        await batcher.start()
        requests = [np.full((1 + i % 3, 2), float(i)) for i in range(30)]
        results = await asyncio.gather(*(batcher.submit(r, 2.0) for r in requests))
        await batcher.stop()
        return requests, results

    requests, results = run(scenario())
    for request, result in zip(requests, results):
        np.testing.assert_array_equal(result, request * 2.0)
    assert sum(calls) == sum(len(r) for r in requests)
    assert len(calls) < len(requests) / 3 and max(calls) <= 16


def test_requests_with_different_options_are_not_mixed():
    seen = []

    def model(items, flip):
        seen.append((len(items), flip))
        return items + (100 if flip else 0)

    async def scenario():
        batcher = MicroBatcher(model, max_size=64, max_wait_ms=10, queue_size=1000)
        await batcher.start()
        out = await asyncio.gather(*(batcher.submit(np.array([[i]]), i % 2 == 0) for i in range(10)))
        await batcher.stop()
        return out

    out = run(scenario())
    assert [int(o[0, 0]) for o in out] == [i + (100 if i % 2 == 0 else 0) for i in range(10)]


def test_full_queue_is_refused_and_errors_reach_every_request():
    release = threading.Event()

    def slow(items):
        release.wait(5)
        raise RuntimeError("model failed")

    async def scenario():
        batcher = MicroBatcher(slow, max_size=4, max_wait_ms=1, queue_size=6)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.zeros((4, 1))))
        await asyncio.sleep(0.05)  # first batch is inside the model now
        queued = asyncio.ensure_future(batcher.submit(np.zeros((5, 1))))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await batcher.submit(np.zeros((2, 1)))
        release.set()
        for future in (first, queued):
            with pytest.raises(RuntimeError, match="model failed"):
                await future
        await batcher.stop()

    run(scenario())


def test_threshold_for_far_never_promises_less_than_asked():
    calibration = Calibration({1e-2: 0.2, 1e-3: 0.3, 1e-4: 0.4}, "test")
    assert calibration.threshold_for(1e-3) == (0.3, 1e-3)
    assert calibration.threshold_for(5e-3) == (0.3, 1e-3)
    assert calibration.threshold_for(0.5) == (0.2, 1e-2)
    assert calibration.threshold_for(1e-6) == (0.4, 1e-4)  # stricter than calibrated: the strictest available


def test_fp16_model_is_widened_for_the_cpu_provider_and_keeps_its_outputs(tmp_path):
    import onnx
    import torch

    from stra_face import models
    from stra_face.training.export.onnx_export import export_onnx
    from stra_face.vision.inference import OnnxModel, has_fp16_weights

    torch.manual_seed(0)
    network = models.create_model("mobilenetv2_100", embedding_dim=64).eval()
    path = export_onnx(network, tmp_path / "small.onnx", (3, 64, 64), fp16=True)
    assert has_fp16_weights(onnx.load(str(path)))
    model = OnnxModel(path, ["CPUExecutionProvider"])
    assert model.widened
    assert not any(
        value.type == "tensor(float16)" for value in model.session.get_inputs() + model.session.get_outputs()
    )
    batch = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = network(torch.from_numpy(batch)).numpy()
    produced = model.run(batch)
    assert produced.dtype == np.float32
    # fp16-rounded weights computed in fp32: within fp16 precision of the original network
    assert np.abs(produced - expected).max() < 1e-2 * np.ptp(expected)
