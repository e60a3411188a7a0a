"""Provenance: an invisible, robust watermark on every frame LokiTalk writes.

- `payload`: what the watermark says (model id, consent id, serial; 64 bits) and its channel coding
  (CRC-16 for validation, a rate-1/3 convolutional code decoded with soft-decision Viterbi).
- `watermark`: embedding (`embed_frames`, streaming, per frame) and detection (`detect_frames`,
  `detect_video`): a key-derived spread-spectrum pattern in the luma, tiled over the frame at a
  size relative to the frame, with a pilot for synchronisation after crops and rescaling, summed
  over frames before decoding.
- `attacks`: what happens to videos in the wild (H.264 re-encode, downscale, crop, clip cut), for
  tests and benchmarks.
"""

from lokitalk.provenance.payload import Payload
from lokitalk.provenance.watermark import Detection, detect_frames, detect_video, embed_frames

__all__ = ["Detection", "Payload", "detect_frames", "detect_video", "embed_frames"]
