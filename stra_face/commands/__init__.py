"""The `stra-face` commands that work on image files and folders, without a server."""
