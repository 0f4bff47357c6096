"""ONNX Runtime sessions for the shipped models, and micro-batching of concurrent requests."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, numpy_helper

from stra_face.vision.cards import ModelCard, sha256_file
from stra_face.vision.preprocess import ARCFACE_112, EXPRESSIONS, FACE_INPUTS, to_expression_input, to_face_input
from stra_face.vision.providers import select_providers

log = logging.getLogger("stra_face.inference")


def widen_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite an fp16 graph to compute in fp32 with the same (fp16-rounded) weights, in place.

    Models ship as fp16 to stay small; ONNX Runtime's CPU provider wraps fp16 ops in casts (about 10%
    slower than fp32 on ResNet50-StRA here), so CPU sessions run the widened graph."""

    def widen_tensor(tensor: TensorProto) -> None:
        if tensor.data_type == TensorProto.FLOAT16:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name))

    def widen_graph(graph: onnx.GraphProto) -> None:
        for initializer in graph.initializer:
            widen_tensor(initializer)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR:
                    widen_tensor(attribute.t)
                elif attribute.type == onnx.AttributeProto.GRAPH:
                    widen_graph(attribute.g)
                elif attribute.name in ("to", "dtype") and attribute.i == TensorProto.FLOAT16:
                    attribute.i = TensorProto.FLOAT
        for value in [*graph.value_info, *graph.input, *graph.output]:
            if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
                value.type.tensor_type.elem_type = TensorProto.FLOAT

    widen_graph(model.graph)
    return model


def has_fp16_weights(model: onnx.ModelProto) -> bool:
    return any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer)


class OnnxModel:
    """One ONNX file in one session; records the providers ONNX Runtime really uses."""

    def __init__(self, path: Path, providers: list[str], intra_op_threads: int = 0):
        if not path.exists():
            raise FileNotFoundError(f"model file not found: {path}")
        # Only what this machine can run: asking onnxruntime-gpu for CUDA without a driver prints errors.
        wanted = select_providers(providers)
        options = ort.SessionOptions()
        # Idle ONNX Runtime workers spin by default, and on a small machine they take the cores the
        # numpy / OpenCV work between calls needs: detection at 480p took 180 ms with spinning, 84 without.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        # ONNX Runtime's CPU arena keeps the peak of every call for good: one 225-face image left the
        # server 2 GiB larger. Without it each call's buffers go back to malloc, which returns large
        # ones to the system, at about 10% more CPU for the detector on crowds and none measurable on
        # a portrait (shrinking the arena after each run cost more: docs/memory.md).
        options.enable_cpu_mem_arena = False
        self.path = path
        source: str | bytes = str(path)
        self.widened = False
        if "CUDAExecutionProvider" not in wanted:
            proto = onnx.load(str(path))
            if has_fp16_weights(proto):
                source, self.widened = widen_fp16(proto).SerializeToString(), True
                log.info("%s: fp16 weights widened to fp32 for the CPU provider", path.name)
        self.session = ort.InferenceSession(source, options, providers=wanted)
        self.providers = self.session.get_providers()  # what the session actually got, after fallbacks
        self.sha256 = sha256_file(path)
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = self.session.get_inputs()[0].shape
        log.info("%s loaded: providers %s, sha256 %s", path.name, self.providers, self.sha256[:12])
        if "CUDAExecutionProvider" in wanted and "CUDAExecutionProvider" not in self.providers:
            log.warning("%s runs WITHOUT the GPU: CUDAExecutionProvider was requested but is not in use", path.name)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class EmbeddingModel(OnnxModel):
    """A face embedding file. Its card's `input_kind` names the aligned face it reads (ArcFace 112x112
    crop or dlib's 150x150 chip; ArcFace when the card is silent); its output width is its dimension.
    `card` stands in for the file's own card (an export step benchmarks its file before writing the card)."""

    def __init__(self, path: Path, providers: list[str], intra_op_threads: int = 0, card: ModelCard | None = None):
        super().__init__(path, providers, intra_op_threads)
        card = card or ModelCard.beside(path)
        kind = (card and card.input_kind) or ARCFACE_112.name
        if kind not in FACE_INPUTS:
            raise ValueError(f"{path.name}: its card's input_kind {kind!r} is not one of {sorted(FACE_INPUTS)}")
        self.input_kind = FACE_INPUTS[kind]
        self.name = (card and card.name) or path.stem
        if isinstance(self.input_shape[-1], int) and self.input_shape[-1] != self.input_kind.size:
            raise ValueError(
                f"{path.name}: input {self.input_shape} does not read {kind} faces ({self.input_kind.size}px)"
            )
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, faces: np.ndarray, flip: bool = False) -> np.ndarray:
        """(N, S, S, 3) RGB faces aligned for `input_kind` -> (N, D) L2-normalised embeddings (image + mirror summed
        when flip)."""
        batch = to_face_input(faces, self.input_kind)
        features = self.run(batch)
        if flip:
            features = features + self.run(batch[..., ::-1].copy())
        return features / np.linalg.norm(features, axis=1, keepdims=True).clip(min=1e-12)


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


class ModesUnavailable(ValueError):
    """The expression model has no `modes` output (not an StRA model, or exported without it)."""


class ExpressionModel(OnnxModel):
    MODES = "modes"  # second output of StRA expression models: r_ig maps (N, G, h, w) in [0, 1]

    @property
    def has_modes(self) -> bool:
        return any(output.name == self.MODES for output in self.session.get_outputs())

    def probabilities(self, crops: np.ndarray, flip: bool = False) -> np.ndarray:
        """(N, 48, 48) grayscale crops -> (N, 7) softmax probabilities in EXPRESSIONS order.

        flip: the mean of the probabilities of each crop and its mirror (training's `--tta flip`).
        """
        return self.predict(crops, flip)[0]

    def predict(
        self, crops: np.ndarray, flip: bool = False, modes: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities (N, 7), mode maps (N, G, h, w) of the crops as given, or None unless `modes`).

        The maps come from the same model call as the probabilities (the graph computes them
        anyway); with flip they are those of the unmirrored crops, so they stay aligned with them."""
        if modes and not self.has_modes:
            raise ModesUnavailable(
                f"the expression model {self.path.name} (sha256 {self.sha256[:12]}) has no '{self.MODES}' output; "
                "mode maps need an StRA model exported by `python -m stra_face.training.fer ship`"
            )
        batch = to_expression_input(crops)
        inputs = np.concatenate([batch, batch[..., ::-1]]) if flip else batch  # crops and mirrors in one call
        names = [self.session.get_outputs()[0].name] + ([self.MODES] if modes else [])
        outputs = self.session.run(names, {self.input_name: inputs})
        probabilities = _softmax(outputs[0])
        if flip:
            probabilities = (probabilities[: len(batch)] + probabilities[len(batch) :]) / 2
        maps = outputs[1][: len(batch)].astype(np.float32) if modes else None
        return probabilities.astype(np.float32), maps

    labels = EXPRESSIONS


class Overloaded(RuntimeError):
    """The batch queue is full: the caller should retry later (HTTP 503)."""


@dataclass
class _Pending:
    items: np.ndarray
    options: tuple
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gathers the faces of concurrent requests into one model call.

    A worker task takes the first waiting request, then keeps taking requests with the same
    options until `max_size` faces are gathered or `max_wait_ms` has passed, runs the model
    once in a worker thread and hands each request its slice. The queue is bounded (in
    faces): when full, `submit` raises Overloaded instead of letting latency grow without end.
    """

    def __init__(self, function, max_size: int, max_wait_ms: float, queue_size: int, observe_batch=None):
        self.function = (
            function  # (items, *options) -> outputs (an array, or a tuple of arrays / None), row-aligned with items
        )
        self.max_size = max_size
        self.max_wait = max_wait_ms / 1000
        self.queue_size = queue_size
        self.observe_batch = observe_batch or (lambda size: None)
        self._queue: asyncio.Queue[_Pending] | None = None
        self._queued_items = 0
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    async def submit(self, items: np.ndarray, *options) -> np.ndarray:
        if len(items) == 0:
            return self.function(items, *options)
        # An idle queue takes any request, even one with more faces than queue_size.
        if self._queued_items and self._queued_items + len(items) > self.queue_size:
            raise Overloaded(f"{self._queued_items} faces are waiting for the model; retry later")
        future = asyncio.get_running_loop().create_future()
        self._queued_items += len(items)
        await self._queue.put(_Pending(items, options, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        carry: _Pending | None = None
        while True:
            first = carry or await self._queue.get()
            carry = None
            group, size = [first], len(first.items)
            deadline = first.enqueued + self.max_wait
            while size < self.max_size:
                timeout = deadline - time.perf_counter()
                try:
                    pending = (
                        self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._queue.get(), timeout)
                    )
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                if pending.options != first.options or size + len(pending.items) > self.max_size:
                    carry = pending  # starts the next batch
                    break
                group.append(pending)
                size += len(pending.items)
            self._queued_items -= size
            self.observe_batch(size)
            try:
                outputs = await loop.run_in_executor(
                    None, self.function, np.concatenate([p.items for p in group]), *first.options
                )
            except Exception as error:  # the batch failed: every request in it gets the error
                for pending in group:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            start = 0
            for pending in group:
                if not pending.future.done():
                    pending.future.set_result(_rows(outputs, start, start + len(pending.items)))
                start += len(pending.items)


def _rows(outputs, start: int, stop: int):
    """Rows start:stop of a batch's outputs: an array, or a tuple of arrays (None entries stay None)."""
    if isinstance(outputs, tuple):
        return tuple(None if output is None else output[start:stop] for output in outputs)
    return outputs[start:stop]
