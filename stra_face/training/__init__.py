"""Training, evaluation, benchmarking and export of StRA-Face models."""
