"""Likeness of previews scored while training (trainer/checkpoints.py: LiveLikeness, what a
likeness sweep prunes on): the real dlib backend on real photos (the astronaut's references;
previews of her, of Grace Hopper, of empty scenes), read back from the preview files."""

from __future__ import annotations

from pathlib import Path

import cv2
import evaluation_media as M
import numpy as np

from loraforge.evaluation.choose import likeness
from loraforge.evaluation.identity import score_identity
from loraforge.trainer.checkpoints import LiveLikeness


def _write(d: Path, imgs: list[np.ndarray]) -> list[Path]:
    d.mkdir(parents=True)
    paths = []
    for i, img in enumerate(imgs):
        cv2.imwrite(str(d / f"{i:02d}.png"), img)
        cv2.imwrite(str(d / f"{i:02d}_strip.png"), np.hstack([img, img]))  # not scored
        paths += [d / f"{i:02d}.png", d / f"{i:02d}_strip.png"]
    return paths


def test_previews_are_scored_as_the_evaluation_scores_them(backend, references, tmp_path):
    built: list[int] = []

    def build():
        built.append(1)
        return references, backend

    live = LiveLikeness(build)
    own, other = M.renders("astronaut", range(40, 43)), M.renders("hopper", range(30, 33))
    a = live.score(2, _write(tmp_path / "a", own))
    b = live.score(4, _write(tmp_path / "b", other))
    empty = [M.background(np.random.default_rng(s)) for s in (1, 2)]
    assert live.score(6, _write(tmp_path / "c", empty)) is None  # no face: unmeasurable
    assert built == [1]  # references once per run
    assert a is not None and b is not None and a > b
    assert live.values == {2: a, 4: b}
    assert a == round(likeness(score_identity(own, references, backend)), 4)


def test_no_reference_face_leaves_every_step_unscored(backend, tmp_path):
    live = LiveLikeness(lambda: (None, backend))
    assert live.score(2, _write(tmp_path / "a", M.renders("astronaut", [40]))) is None
    assert live.values == {}
