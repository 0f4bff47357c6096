"""StRA-Face command-line entry point and package metadata."""
__version__ = "0.1.0"
