"""`lokitalk speak`: drive a trained avatar with any speech.

- `audio_input`: load and check the speech (any format and rate; silence, corrupt, too short).
- `lips`: speech -> Audio2Motion (shared space) -> this avatar's own lip feature.
- `blinks`: eye openings with blinks at the person's own rate and shape.
- `head_motion`: head/torso pose, the person's own motion re-cut without loops.
- `drive`: all per-frame signals; `render`: frames one at a time; `api`: `speak`.
- `stream_lips`, `stream_plan`, `stream`: the same for speech that arrives while it is spoken (`lokitalk stream`):
  frames out as soon as their signals are final, ~0.3 s after their audio.
"""

from .api import speak
from .config import SpeakConfig

__all__ = ["SpeakConfig", "speak"]
