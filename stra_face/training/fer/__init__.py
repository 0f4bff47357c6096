"""FER2013 / FER+ expression classifiers: data, training, evaluation, shipping, mode maps."""
