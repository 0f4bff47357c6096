"""ONNX export with a parity check (registered networks, checkpoints, MTCNN)."""
