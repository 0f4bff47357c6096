from stra_face.training.face.cli import main

main()
