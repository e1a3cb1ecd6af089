"""Package data: the exported offline reply model."""
