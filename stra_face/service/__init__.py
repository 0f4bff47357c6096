"""StRA-Face REST service: detection, alignment, embedding, expression, verification, gallery."""
