"""The face trainer's settings, torch-free: the command line parses them without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, field

PIPELINE_MODELS = ("resnet50_stra", "resnet50")
DEFAULT_DATA = "runs/data/celeba_faces.npz"


@dataclass
class FaceConfig:
    data: str = DEFAULT_DATA  # a face pack (python -m stra_face.training.face.data pack) or <identity>/<face> folders
    out: str = "runs/face/resnet50_stra"
    model: str = "resnet50_stra"
    model_kwargs: dict = field(default_factory=dict)
    embedding_dim: int = 512
    dropout: float = 0.0
    head: str = "cosface"  # arcface, cosface, softmax
    scale: float = 32.0
    margin: float = 0.2
    min_faces: int = 2  # identities with fewer faces train by distillation only
    teacher: str = "dlib"  # dlib: dlib's trained ResNet; random: its architecture untrained (smoke tests); none
    teacher_weights: str = ""  # dlib's .dat file (default: the face_recognition_models package's)
    teacher_sees_degraded: bool = False  # True: the teacher gets the student's blurred/down-scaled view too
    distill_weight: float = 20.0
    augment: dict = field(default_factory=dict)  # FaceAugment fields to override
    epochs: int = 20
    batch_size: int = 64  # per process
    optimizer: str = "sgd"
    lr: float = 0.02  # for a global batch of 64, scaled linearly
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    diversity_weight: float = 0.0
    grad_clip: float = 5.0
    amp: bool = True
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    val_identities: int = 20
    max_steps: int = 0
    identities: int = 0  # use only the first N identities (smoke runs); 0: all
