"""Frontal face detection that ships offline: the LBP cascade bundled in scikit-image's wheel
(``lbpcascade_frontalface_opencv.xml``, OpenCV's own training), run by scikit-image.

OpenCV 5 dropped ``CascadeClassifier`` (and its bundled cascades) from the main module, and
its DNN detector (YuNet) needs a model file no dependency ships; scikit-image's cascade needs
neither. It finds upright, roughly frontal faces of at least 24 pixels at the detection
scale: about 0.04 s of CPU for a 426x240 frame.
"""
from __future__ import annotations

import numpy as np

__all__ = ["FaceDetector"]

WINDOW = 24  # the cascade's base window, pixels
SCALE_STEP = 1.25


class FaceDetector:
    """``detector(gray) -> (n, 4)`` boxes (x, y, w, h) in the gray frame's pixels."""

    def __init__(self, min_face: float = 0.1):
        from skimage.data import lbp_frontal_face_cascade_filename
        from skimage.feature import Cascade

        self.cascade = Cascade(lbp_frontal_face_cascade_filename())
        self.min_face = min_face  # of the frame height

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        h = gray.shape[0]
        smallest = max(WINDOW, int(self.min_face * h))
        found = self.cascade.detect_multi_scale(
            np.ascontiguousarray(gray), scale_factor=SCALE_STEP, step_ratio=1,
            min_size=(smallest, smallest), max_size=(h, h),
        )
        return np.array([(d["c"], d["r"], d["width"], d["height"]) for d in found], dtype=np.float64).reshape(-1, 4)
