from stra_face.training.eval.cli import main

main()
