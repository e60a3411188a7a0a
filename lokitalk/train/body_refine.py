"""Per-frame body corrections, learned with the field (`TrainConfig.body_refinement`).

The rigid torso stage (lokitalk.model.rigid) holds the body still in front of the camera while
the head turns. A real body breathes, shrugs and leans: on id01's training frames the rendered
torso and collar sat 1-2 px off, in a direction that changed from frame to frame, and shifting
the render by that much gained up to 7 dB on the torso (docs/RESULTS.md, "What the neck band's
error is").
Frames that disagree about where the collar is average it into a blur in the canonical space.

Here every training frame gets a small rigid correction of the body (rotation vector w_n,
translation u_n, in the reference body frame: model.rigid.camera_rigid_offset), on knots every
`knot_frames` frames as the head's pose corrections (lokitalk.train.pose_refine, whose table,
sparse updates and gauge this reuses): the corrections' mean over the training frames is held at
zero, since frames never trained on (the test split, spoken video) keep the mean body. Nothing
predicts a body correction for those frames; what training was to gain is a sharper canonical body.
Measured (`fast`, id01 and id04): the corrections learned real motion (median 0.5 deg, 1 mm) but the
body did not get sharper, id01 was level and id04 lost 0.63 dB on its neck band, so it is off.
"""

from __future__ import annotations

import torch

from ..model.pose_calibration import TRANSLATION_UNIT_M
from .pose_refine import FramePoseCorrections


class FrameBodyCorrections(FramePoseCorrections):
    """Body corrections (w, u / TRANSLATION_UNIT_M) on knots, starting at zero (a sparse embedding:
    torch.optim.SparseAdam)."""

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A one-frame batch -> the same batch with its frame's `body_correction` [6] (rotation
        vector, translation in metres), which the torso stage's rigid map reads (model.field)."""
        with torch.autocast(device_type=self.table.weight.device.type, enabled=False):
            row = self.rows(batch["frame"])[0]
            correction = torch.cat([row[:3], row[3:] * TRANSLATION_UNIT_M])
        return {**batch, "body_correction": correction}
