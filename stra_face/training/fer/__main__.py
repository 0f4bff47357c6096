from stra_face.training.fer.cli import main

main()
