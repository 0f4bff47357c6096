from stra_face.training.export.onnx_export import main

main()
