"""Rendering a trained model: batches of rays, whole frames, videos."""
