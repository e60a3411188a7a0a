"""Audio2Motion: speech (log-mel windows) -> lip motion in a space shared by all identities.

`shared_basis` defines the shared, size-normalised lip-motion space; `model` the network;
`train` the identity-balanced training and the held-out evaluation beside a trivial baseline.
"""

from .model import Audio2Motion, Audio2MotionConfig
from .shared_basis import (IdentityMouth, decode_identity, encode_identity, fit_shared_lip_basis,
                           identity_mouth)
from .train import TrainConfig, evaluate_audio2motion, train_audio2motion

__all__ = ["Audio2Motion", "Audio2MotionConfig", "IdentityMouth", "TrainConfig", "decode_identity",
           "encode_identity", "evaluate_audio2motion", "fit_shared_lip_basis", "identity_mouth",
           "train_audio2motion"]
