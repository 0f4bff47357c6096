"""Face embedding: data packs, the distillation trainer, margins, the dlib teacher and its port."""
