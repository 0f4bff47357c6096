"""Everything the routes share, built once at start-up (models, detector, batchers, gallery)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import onnxruntime as ort

from stra_face import __version__
from stra_face.bundle import load_face_models
from stra_face.gallery import Gallery, GalleryError, open_gallery
from stra_face.service.limits import Admission
from stra_face.service.metrics import Metrics
from stra_face.service.settings import Settings
from stra_face.vision.detect import FaceDetector
from stra_face.vision.inference import EmbeddingModel, ExpressionModel, MicroBatcher
from stra_face.vision.quality import QualityGate
from stra_face.vision.thresholds import Calibration

log = logging.getLogger("stra_face.state")


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    detector: FaceDetector
    embedder: EmbeddingModel
    expression: ExpressionModel | None  # optional: a verification-only deployment needs no expression model
    embed_batcher: MicroBatcher
    rnet_batcher: MicroBatcher  # the detector's R-Net and O-Net crops of every waiting image, one call each
    onet_batcher: MicroBatcher
    expression_batcher: MicroBatcher | None
    gallery: Gallery
    calibration: Calibration | None
    admission: Admission
    quality_gate: QualityGate = QualityGate()

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics) -> ServiceState:
        models = load_face_models(settings)
        detector, embedder, expression, calibration = (
            models.detector,
            models.embedder,
            models.expression,
            models.calibration,
        )
        if expression is None:
            log.warning(
                "no expression model at %s: /v1/expression and /v1/analyze answer 503", settings.expression_model
            )
        for name, model in (("embedding", embedder), ("expression", expression)):
            if model is not None:
                metrics.provider.labels(name, model.providers[0]).set(1)
        if calibration is None:
            log.warning(
                "no calibrated thresholds for embedding model %s in %s: "
                "/v1/verify and /v1/identify need an explicit threshold",
                embedder.sha256[:12],
                settings.thresholds_file,
            )
        gallery = open_gallery(
            settings.gallery_path,
            settings.gallery_dsn,
            use_pgvector=settings.gallery_pgvector,
            ann_min_faces=settings.gallery_ann_min_faces,
            ann_candidates=settings.gallery_ann_candidates,
        )

        def batcher(
            function, model_name: str, scale: int = 1, max_wait_ms: float = settings.batch_max_wait_ms
        ) -> MicroBatcher:
            return MicroBatcher(
                function,
                settings.batch_max_size * scale,
                max_wait_ms,
                settings.batch_queue_size * scale,
                observe_batch=metrics.batch_size.labels(model_name).observe,
            )

        # An image brings tens of R-Net candidates (hundreds in a crowd) where it brings one face to embed.
        # The detector's batchers do not wait: they take every image whose crops are ready, and the
        # crops that come while a call runs go into the next (waiting 5 ms cost each detection 10 ms).
        return cls(
            settings,
            metrics,
            detector,
            embedder,
            expression,
            batcher(embedder.embed, "embedding"),
            batcher(detector.run_rnet, "mtcnn_rnet", scale=8, max_wait_ms=0),
            batcher(detector.run_onet, "mtcnn_onet", scale=2, max_wait_ms=0),
            batcher(expression.predict, "expression") if expression else None,
            gallery,
            calibration,
            Admission(settings.max_image_requests, settings.max_pixels_in_flight),
            models.quality_gate,
        )

    async def start(self) -> None:
        for batcher in (self.rnet_batcher, self.onet_batcher):
            await batcher.start()
        await self.embed_batcher.start()
        if self.expression_batcher is not None:
            await self.expression_batcher.start()

    async def stop(self) -> None:
        for batcher in (self.rnet_batcher, self.onet_batcher):
            await batcher.stop()
        await self.embed_batcher.stop()
        if self.expression_batcher is not None:
            await self.expression_batcher.stop()
        self.gallery.close()

    def info(self) -> dict:
        return {
            "version": __version__,
            "onnxruntime": ort.__version__,
            "available_providers": ort.get_available_providers(),
            "models": {
                name: {
                    "path": str(model.path),
                    "sha256": model.sha256,
                    "providers": model.providers,
                    "input_shape": [str(d) for d in model.input_shape],
                    # the GPU image asks for CUDA first; without a usable GPU it runs on the CPU, and says so
                    "cpu_fallback": "CUDAExecutionProvider" in self.settings.providers
                    and "CUDAExecutionProvider" not in model.providers,
                }
                for name, model in (("embedding", self.embedder), ("expression", self.expression))
                if model is not None
            },
            # The model that answers /v1/embed, /v1/verify and /v1/identify (STRA_EMBEDDING_MODEL).
            "embedding_model": {
                "name": self.embedder.name,
                "sha256": self.embedder.sha256,
                "dim": self.embedder.dim,
                "input_kind": self.embedder.input_kind.name,
            },
            "expressions": list(ExpressionModel.labels) if self.expression is not None else None,
            # which calibration is in force (STRA_THRESHOLDS_FILE): the file, the pairs it rests on, its FARs
            "thresholds": None
            if self.calibration is None
            else {
                "source": self.calibration.source,
                **self.calibration.details,
                "far_to_cosine": {f"{far:g}": t for far, t in sorted(self.calibration.thresholds.items())},
                "far_floor": self.calibration.far_floor,
                "default_far": self.settings.default_far,
                "default_fpir": self.settings.default_fpir,
            },
            "quality_gate": asdict(self.quality_gate),
            "gallery": self.gallery.kind,
            "enrolments": self.info_enrolments(),
        }

    def enrolments(self) -> dict:
        """Gallery faces searchable with the current model, and those enrolled with another model
        (kept, never searched: re-enrol them to find those subjects with this model)."""
        current, other = self.gallery.face_counts(self.embedder.sha256)
        return {"current_model": current, "need_reenrolment": other}

    def info_enrolments(self) -> dict | None:
        try:
            return self.enrolments()
        except GalleryError as error:  # /v1/info still answers while the database is down
            log.warning("gallery unavailable for /v1/info: %s", error.message)
            return None
