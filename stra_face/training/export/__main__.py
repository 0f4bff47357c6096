from stra_face.training.export.cli import main

main()
