"""Application services: one transaction each, composing pure domain logic with dal/ and clients/."""
