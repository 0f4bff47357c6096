"""The FER trainer's settings and names, torch-free: the command line parses them without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, field

SPLITS = ("Training", "PublicTest", "PrivateTest")
BENCHMARKS = {"fer2013": "FER2013", "ferplus": "FER+"}
LABEL_SETS = ("fer2013", "ferplus")  # the labels FerConfig.labels may name (ferplus.py reads FER+'s)
DEFAULT_DATA = "../shared/data/fer2013/fer2013_jpg.npz"


@dataclass
class FerConfig:
    data: str = DEFAULT_DATA
    out: str = "runs/fer/resnet50_stra"
    model: str = "resnet50_stra"
    # For 48x48 inputs: a 3x3 stride-1 stem with max-pool (stem_stride=2) and last_stride=1 keep
    # layer4 -- where StRA lives -- at 6x6 instead of the 2x2 an ImageNet stem would leave.
    model_kwargs: dict = field(default_factory=lambda: {"stem_stride": 2, "last_stride": 1})
    dropout: float = 0.2
    epochs: int = 40
    batch_size: int = 64  # per process
    optimizer: str = "sgd"
    lr: float = 0.05  # for the global batch (batch_size x world size) of 64; scaled linearly
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    mixup: float = 0.0  # >0: mixup with Beta(mixup, mixup) weights, on hard or soft labels alike
    # "fer2013": the original labels; "ferplus": FER+'s 10-annotator votes (ferplus.py), as vote
    # distributions ("probability", soft-label cross-entropy) or one majority label per image.
    labels: str = "fer2013"
    ferplus_mode: str = "probability"
    ferplus_classes: int = 7  # 7: FER2013's classes (contempt votes dropped); 8: contempt as a class
    ferplus_votes: str = ""  # default: ferplus_votes.npz next to `data`
    diversity_weight: float = 0.0
    grad_clip: float = 0.0
    amp: bool = True  # bf16 autocast on GPU; ignored on CPU
    # "device": the split lives on the training device and is augmented there in batch
    # (fer_data.ResidentLoader); "loader": DataLoader workers running albumentations;
    # "auto": device on a GPU, loader on the CPU.
    augment_on: str = "auto"
    channels_last: bool = True  # NHWC activations on GPU (tensor-core friendly); ignored on CPU
    compile: bool = False  # torch.compile the network (first epoch pays the compilation)
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    eval_tta: str = "flip"  # TTA used for the per-epoch PublicTest check
    max_steps: int = 0  # >0: stop each epoch after this many steps (smoke runs)
    train_subset: int = 0  # >0: a seeded random N training images only (smoke runs)
    eval_subset: int = 0  # >0: a random N PublicTest images for the per-epoch check (smoke runs)
