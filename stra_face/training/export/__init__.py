"""ONNX export with a parity check (registered networks, checkpoints, MTCNN)."""

DEFAULT_OPSET = 18  # here, torch-free, for the command line (cli.py) and the exporter alike
