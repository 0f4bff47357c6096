from stra_face.training.face.trainer import main

main()
