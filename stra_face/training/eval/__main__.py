from stra_face.training.eval.verification import main

main()
