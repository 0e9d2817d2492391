"""Optional insightface backend: SCRFD detector + ArcFace embedding (+ 68-point 3D landmarks).

insightface is not a dependency: it is imported only when this backend is built, and only when
its model pack folder (e.g. buffalo_l with det_10g.onnx, w600k_r50.onnx, 1k3d68.onnx) has been
provisioned locally, because nothing may be downloaded at run time. ArcFace threshold: cosine
similarity above ~0.35-0.4 is the same person; on L2-normalised vectors the euclidean distance is
sqrt(2 - 2 cos), so cos 0.4 is distance 1.095. Near-copies have cos > ~0.85 (distance < 0.55).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from loraforge.curation.errors import BackendUnavailable
from loraforge.curation.face_types import DetectedFace, normalize
from loraforge.curation.geometry import Box

SAME_PERSON_COSINE = 0.4
DUPLICATE_COSINE = 0.85


def cosine_to_distance(cos: float) -> float:
    return math.sqrt(max(0.0, 2.0 - 2.0 * cos))


class InsightFaceBackend:
    name = "insightface"
    same_person_distance = cosine_to_distance(SAME_PERSON_COSINE)
    duplicate_distance = cosine_to_distance(DUPLICATE_COSINE)

    def __init__(self, model_dir: Path | str | None, det_size: int = 640) -> None:
        if model_dir is None:
            raise BackendUnavailable(
                "the insightface backend needs its model pack folder; set the curation "
                "insightface model directory (a provisioned buffalo_l folder) or use 'dlib'"
            )
        pack = Path(model_dir)
        if not pack.is_dir() or not any(pack.glob("*.onnx")):
            raise BackendUnavailable(
                f"{pack}: no insightface model pack (*.onnx) there; provision buffalo_l into it "
                "or use the 'dlib' backend"
            )
        try:
            from insightface.app import FaceAnalysis
        except ImportError as e:
            raise BackendUnavailable(
                "insightface is not installed; pip install insightface onnxruntime, "
                "or use the 'dlib' backend"
            ) from e
        # FaceAnalysis looks for <root>/models/<name>; point it at the provisioned pack
        root = pack.parent.parent if pack.parent.name == "models" else pack.parent
        self._app = FaceAnalysis(name=pack.name, root=str(root), providers=["CPUExecutionProvider"])
        self._app.prepare(ctx_id=-1, det_size=(det_size, det_size))

    def detect(self, image_bgr: np.ndarray, embed_largest: bool = True) -> list[DetectedFace]:
        faces = self._app.get(image_bgr)
        out = []
        for f in faces:
            x0, y0, x1, y1 = (float(v) for v in f.bbox)
            lm = getattr(f, "landmark_3d_68", None)
            pts = None if lm is None else np.asarray(lm, np.float32)[:, :2]
            emb = getattr(f, "normed_embedding", None)
            out.append(
                DetectedFace(
                    Box(x0, y0, x1 - x0, y1 - y0),
                    float(f.det_score),
                    pts,
                    None if emb is None else normalize(emb),
                )
            )
        out.sort(key=lambda d: (-d.box.area, d.box.x, d.box.y))
        if not embed_largest:
            out = [DetectedFace(d.box, d.score, d.landmarks, None) for d in out]
        else:
            out = (
                [out[0]] + [DetectedFace(d.box, d.score, d.landmarks, None) for d in out[1:]]
                if out
                else out
            )
        return out

    def embed(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray | None:
        """Embedding of the largest face in the frame (insightface embeds while detecting)."""
        found = [d for d in self.detect(image_bgr, embed_largest=True) if d.embedding is not None]
        return found[0].embedding if found else None
