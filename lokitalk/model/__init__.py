"""The NeRF: encodings, deformation fields, canonical field and renderer."""
