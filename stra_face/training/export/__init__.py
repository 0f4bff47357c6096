"""ONNX export with a parity check (registered networks, checkpoints, MTCNN)."""

# Here, torch-free, for the command line (cli.py) and the exporter alike. Opset 18 is the newest the
# torch.export-based exporter targets natively and is supported by every onnxruntime >= 1.14.
DEFAULT_OPSET = 18
