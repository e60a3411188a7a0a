"""The avatar dataset: reading prepared avatars (and, later, ray samplers)."""
