"""A self-made, license-clean talking subject with known ground truth.

`make_talking_clip` animates the public-domain NASA astronaut portrait that ships with
scikit-image: the mouth follows a synthetic speech signal (`synth_speech`), the eyes blink at
seeded times and the head sways. The result is the default input of `lokitalk prepare` on a
machine with no footage, and the ground truth for tests.
"""

from .speech import synth_speech
from .subject import SyntheticClip, make_talking_clip, write_clip

__all__ = ["SyntheticClip", "make_talking_clip", "synth_speech", "write_clip"]
