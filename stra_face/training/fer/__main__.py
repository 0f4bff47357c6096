from stra_face.training.fer.trainer import main

main()
