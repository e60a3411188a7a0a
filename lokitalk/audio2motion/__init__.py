"""Audio2Motion: speech (log-mel windows) -> lip motion in a space shared by all identities.

`shared_basis` defines the shared, size-normalised lip-motion space; `model` the network;
`train` the identity-balanced training and the held-out evaluation beside a trivial baseline;
`predict` chunked prediction for speech of any length; `adapt` the optional per-identity
adaptation (head fine-tuning + amplitude calibration); `io` the saved file (the shipped model:
lokitalk/assets/audio2motion.safetensors, built by tools/build_audio2motion.py).
"""

from .adapt import AdaptConfig, Style, adapt_to_identity
from .io import SHIPPED, load_audio2motion, save_audio2motion
from .model import Audio2Motion, Audio2MotionConfig
from .predict import predict_audio
from .shared_basis import (IdentityMouth, decode_identity, encode_identity, fit_shared_lip_basis,
                           identity_mouth)
from .train import TrainConfig, evaluate_audio2motion, train_audio2motion

__all__ = ["AdaptConfig", "Audio2Motion", "Audio2MotionConfig", "IdentityMouth", "SHIPPED", "Style", "TrainConfig",
           "adapt_to_identity", "decode_identity", "encode_identity", "evaluate_audio2motion",
           "fit_shared_lip_basis", "identity_mouth", "load_audio2motion", "predict_audio", "save_audio2motion",
           "train_audio2motion"]
