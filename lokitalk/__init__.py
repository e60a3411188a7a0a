"""LokiTalk: NeRF talking heads with region-specific deformation and ID-aware transfer."""

__version__ = "0.1.0"
