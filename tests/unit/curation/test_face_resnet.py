"""face_resnet.py: dlib's face ResNet read from dlib's own file and run by ONNX Runtime gives
what dlib's compute_face_descriptor gives, on real faces; a file that is not that network is
refused with the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import curation_media as M
import cv2
import numpy as np
import people_media as PM
import pytest

from loraforge.curation.dlib_backend import _models, models_dir
from loraforge.curation.errors import BackendUnavailable
from loraforge.curation.face_resnet import MODEL_FILE, FaceResNet, read_layers


def _faces() -> list[np.ndarray]:
    """RGB images with one face each: the astronaut and Grace Hopper as photographed, the
    astronaut small in a room (a 13 % face, found on a crop), dark and grainy, and turned 20
    degrees (the chip is rotated upright)."""
    astronaut = cv2.cvtColor(M.astronaut(), cv2.COLOR_BGR2RGB)
    hopper = cv2.cvtColor(M.hopper(), cv2.COLOR_BGR2RGB)
    rng = np.random.default_rng(0)
    dark = np.clip(astronaut * 0.3 + rng.normal(0, 6, astronaut.shape), 0, 255).astype(np.uint8)
    turn = cv2.getRotationMatrix2D((256, 256), 20, 1.0)
    turned = cv2.warpAffine(astronaut, turn, (512, 512), borderMode=cv2.BORDER_REFLECT)
    room = cv2.resize(PM.room(), (1280, 720), interpolation=cv2.INTER_AREA)
    small = PM.paste(room, M.astronaut(), 500, 720 - 540, 540)
    return [astronaut, hopper, dark, turned, cv2.cvtColor(small, cv2.COLOR_BGR2RGB)]


def test_descriptors_equal_dlibs_own_network():
    dlib, detector, predictor, net = _models()
    reference = dlib.face_recognition_model_v1(str(models_dir() / MODEL_FILE))
    checked = 0
    for rgb in _faces():
        rects = detector(rgb, 1)
        assert rects, "the test image must hold a face HOG finds"
        shape = predictor(rgb, max(rects, key=lambda r: r.area()))
        want = np.asarray(reference.compute_face_descriptor(rgb, shape))
        got = net.descriptor(rgb, shape)
        assert got.shape == (128,)
        # float rounding only: a flipped kernel, BGR input or a residual added from the wrong
        # layer each move some value by 0.04-0.3
        assert np.abs(got - want).max() < 1e-5
        checked += 1
    assert checked == 5


def test_a_batch_gives_each_chips_descriptor():
    dlib, detector, predictor, net = _models()
    chips = []
    for rgb in _faces()[:3]:
        shape = predictor(rgb, detector(rgb, 1)[0])
        chips.append(np.asarray(dlib.get_face_chip(rgb, shape, 150, 0.25)))
    batch = net.run(np.stack(chips))
    for chip, row in zip(chips, batch, strict=True):
        assert np.abs(net.run(chip[None])[0] - row).max() < 1e-5


def test_the_layers_read_are_the_networks():
    layers = read_layers(models_dir() / MODEL_FILE)
    kinds = [lay.kind for lay in layers]
    assert kinds[:5] == ["input", "con", "affine", "relu", "max_pool"]
    assert kinds[-2:] == ["avg_pool", "fc"] and len(layers) == 109
    # 14 residual blocks of two convolutions after the stem
    assert kinds.count("add_prev") == 14 and kinds.count("con") == 29
    # dlib's input means, read from the file
    assert np.allclose(layers[0].params[0], [122.782, 117.001, 104.298], atol=1e-3)
    stem = layers[1]
    assert stem.params[0].shape == (32, 3, 7, 7) and stem.stride == (2, 2)
    assert stem.padding == (0, 0)
    assert layers[-1].params[0].shape == (256, 128)


def test_a_layer_this_network_does_not_have_is_refused_not_skipped(tmp_path: Path):
    # one of its relus turned into a GELU (a layer dlib has, this network does not): read as if
    # it were absent, the graph would compute something else without a word
    data = (models_dir() / MODEL_FILE).read_bytes()
    at = data.index(b"\x01\x05relu_", 40_000)
    bad = tmp_path / MODEL_FILE
    bad.write_bytes(data[:at] + b"\x01\x05gelu_" + data[at + 7 :])
    with pytest.raises(BackendUnavailable, match="a 'gelu_' layer, which this network does not"):
        FaceResNet(_models()[0], bad)


@pytest.mark.parametrize("damage", ["truncated", "other_network", "empty", "noise"])
def test_a_file_that_is_not_the_network_names_the_fix(tmp_path: Path, damage: str):
    dlib = _models()[0]
    src = models_dir() / MODEL_FILE
    bad = tmp_path / MODEL_FILE
    if damage == "truncated":
        bad.write_bytes(src.read_bytes()[:3_000_000])
    elif damage == "other_network":  # dlib's CNN face detector: a dlib network, not this one
        shutil.copy(models_dir() / "mmod_human_face_detector.dat", bad)
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        bad.write_bytes(np.random.default_rng(1).bytes(200_000))
    with pytest.raises(BackendUnavailable, match="reinstall face_recognition_models") as e:
        FaceResNet(dlib, bad)
    assert str(bad) in str(e.value)
