"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``, shipped in
face_recognition_models), run by ONNX Runtime instead of dlib.

Why: the ``dlib-bin`` wheel is built without BLAS, so dlib's own forward pass took 74-94 ms a
face here, holding the GIL; the same network in ONNX Runtime (already installed for PP-OCR)
takes a fraction of that and releases the GIL. Nothing is converted ahead or downloaded: the
graph is built in memory from dlib's file as it ships. That file is dlib's serialised network,
input layer first: each layer's name, then its parameters (tensors as little-endian float32),
then its settings (filter size, stride, padding). ``read_layers`` reads it into a list and
refuses a layer this network does not have; ``onnx_model`` writes the graph
(ONNX protobuf, encoded here: the ``onnx`` package is not a dependency), folding each affine
(batch-norm) layer into the convolution before it.

dlib's semantics kept: ``add_prev`` adds tensors of different sizes by padding the smaller one
with zeros at the end (the downsampling blocks' shortcut has fewer channels, and at 4x4 the
block's output is 3x3 where its average-pooled input is 4x4); pools and convolutions with a
stride above 1 have no padding. The descriptor equals dlib's ``compute_face_descriptor`` to
float rounding (tests/unit/curation/test_face_resnet.py compares them on real faces).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loraforge.curation.errors import BackendUnavailable

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# what compute_face_descriptor feeds the network: the aligned face chip, 150 px with a quarter
# of the face as margin
CHIP_SIZE = 150
CHIP_PADDING = 0.25
_OPSET = 17
_IR_VERSION = 8
_FLOAT, _INT64 = 1, 7  # ONNX TensorProto data types
_LAYER_NAMES = (
    b"loss_metric_2",  # written first; the descriptor is what feeds it
    b"input_rgb_image_sized",
    b"con_4",
    b"affine_",
    b"relu_",
    b"max_pool_2",
    b"avg_pool_2",
    b"add_prev_",
    b"fc_2",
)
# a layer's name as dlib writes a string: a one-byte length header, then the bytes (dlib's
# layer names: con_4, relu_, bn_con_2, ...). Tag and skip layers (the residual connections)
# have no name; they are implied by the order of the named ones (onnx_model).
_NAME_HEAD = re.compile(rb"\x01([\x03-\x1f])(?=[a-z])")
_NAME = re.compile(rb"[a-z][a-z0-9_]*_[a-z0-9]*")


@dataclass(frozen=True)
class Layer:
    kind: str  # input | con | affine | relu | max_pool | avg_pool | add_prev | fc
    params: tuple[np.ndarray, ...] = ()  # con: weights OIHW, bias; affine: gamma, beta; fc: W
    window: tuple[int, int] = (0, 0)  # con and pools: kernel rows, cols (0, 0: whole map)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)


class _Reader:
    """dlib's serialisation: integers as a header byte (low nibble: byte count, 0x80: negative)
    and that many little-endian bytes; reals as an integer mantissa and exponent."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def fail(self, what: str) -> BackendUnavailable:
        return BackendUnavailable(
            f"{self.path}: {what} at byte {self.pos}; the file is not dlib's face ResNet as "
            "face_recognition_models ships it; reinstall face_recognition_models"
        )

    def int(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("file ends early")
        head = self.data[self.pos]
        n = head & 0x0F
        if n > 8:
            raise self.fail("not an integer")
        v = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -v if head & 0x80 else v

    def real(self) -> float:
        mantissa = self.int()
        return float(np.ldexp(float(mantissa), self.int()))

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise self.fail("unknown tensor version")
        dims = [self.int() for _ in range(4)]
        n = int(np.prod(dims))
        end = self.pos + 4 * n
        if min(dims) < 0 or end > len(self.data):
            raise self.fail("tensor larger than the file")
        out = np.frombuffer(self.data, "<f4", n, self.pos).reshape(dims)
        self.pos = end
        return out

    def next_layer(self) -> str | None:
        """The next layer's name, None at the end. Called after the previous layer's values
        were read, so only its settings lie in between, never float data. A layer this network
        does not have (another dlib network, a later model) is refused, not skipped."""
        for m in _NAME_HEAD.finditer(self.data, self.pos):
            name = self.data[m.end() : m.end() + m.group(1)[0]]
            if not _NAME.fullmatch(name):
                continue
            if name not in _LAYER_NAMES:
                self.pos = m.start()
                raise self.fail(f"a {name.decode()!r} layer, which this network does not have")
            self.pos = m.end() + len(name)
            return name.decode()
        return None


def read_layers(path: Path) -> list[Layer]:
    r = _Reader(path.read_bytes(), path)
    name = r.next_layer()
    if name == "loss_metric_2":
        name = r.next_layer()
    if name != "input_rgb_image_sized":
        raise r.fail("no input layer")
    mean = np.array([r.real() for _ in range(3)], np.float32)
    if (r.int(), r.int()) != (CHIP_SIZE, CHIP_SIZE):
        raise r.fail(f"input is not {CHIP_SIZE}x{CHIP_SIZE}")
    layers = [Layer("input", (mean,))]
    while (name := r.next_layer()) is not None:
        if name == "con_4":
            params = r.tensor().ravel()
            nf, nr, nc, sy, sx, py, px = (r.int() for _ in range(7))
            k_in, rest = divmod(params.size - nf, nf * nr * nc)
            if rest or k_in <= 0:
                raise r.fail(f"convolution of {params.size} values for {nf} {nr}x{nc} filters")
            w = params[: nf * k_in * nr * nc].reshape(nf, k_in, nr, nc)
            layers.append(Layer("con", (w, params[w.size :]), (nr, nc), (sy, sx), (py, px)))
        elif name == "affine_":
            params = r.tensor().ravel()
            half = params.size // 2
            layers.append(Layer("affine", (params[:half], params[half:])))
        elif name in ("max_pool_2", "avg_pool_2"):
            nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
            layers.append(Layer(name[:8], (), (nr, nc), (sy, sx), (py, px)))
        elif name == "fc_2":
            n_out, n_in = r.int(), r.int()
            fc = r.tensor().reshape(-1, n_out)  # (inputs [+ a bias row], outputs)
            if fc.shape[0] not in (n_in, n_in + 1):
                raise r.fail(f"fully connected layer of {fc.shape} for {n_in} inputs")
            layers.append(Layer("fc", (fc[:n_in], fc[n_in:].ravel())))
        elif name in ("relu_", "add_prev_"):
            layers.append(Layer(name.rstrip("_")))
        else:
            raise r.fail(f"a {name!r} layer after the input")
    if [lay.kind for lay in layers[-2:]] != ["avg_pool", "fc"] or layers[-2].window != (0, 0):
        raise r.fail("the network does not end in a global average and a projection")
    return layers


# --- ONNX protobuf, the fields this graph needs (onnx/onnx.proto) -------------------------------


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int64s as protobuf writes them: ten bytes, two's complement
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _int(field: int, v: int) -> bytes:
    return _varint(field << 3) + _varint(v)


def _bytes(field: int, v: bytes | str) -> bytes:
    raw = v.encode() if isinstance(v, str) else v
    return _varint(field << 3 | 2) + _varint(len(raw)) + raw


def _tensor(name: str, a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    dtype = _INT64 if a.dtype == np.int64 else _FLOAT
    raw = a.astype("<i8" if dtype == _INT64 else "<f4").tobytes()
    return b"".join(_int(1, d) for d in a.shape) + _int(2, dtype) + _bytes(8, name) + _bytes(9, raw)


def _value_info(name: str, dims: tuple[int | str, ...]) -> bytes:
    shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, _FLOAT) + _bytes(2, shape)))


def _attr(name: str, v: int | tuple[int, ...]) -> bytes:
    if isinstance(v, int):
        return _bytes(1, name) + _int(3, v) + _int(20, 2)  # INT
    return _bytes(1, name) + b"".join(_int(8, x) for x in v) + _int(20, 7)  # INTS


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.inits: list[bytes] = []
        self.n = 0

    def const(self, a: np.ndarray) -> str:
        self.n += 1
        name = f"c{self.n}"
        self.inits.append(_tensor(name, a))
        return name

    def node(
        self, op: str, inputs: list[str], out: str = "", **attrs: int | tuple[int, ...]
    ) -> str:
        self.n += 1
        out = out or f"t{self.n}"
        body = b"".join(_bytes(1, i) for i in inputs) + _bytes(2, out) + _bytes(4, op)
        body += b"".join(_bytes(5, _attr(k, v)) for k, v in attrs.items())
        self.nodes.append(body)
        return out

    def pad_to(self, x: str, shape: tuple[int, int, int], to: tuple[int, int, int]) -> str:
        """dlib's add_prev: the smaller tensor grows with zeros at the end of each axis."""
        if shape == to:
            return x
        ends = [0] + [t - s for s, t in zip(shape, to, strict=True)]
        return self.node("Pad", [x, self.const(np.array([0, 0, 0, 0, *ends], np.int64))])


def _out(size: int, window: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - window) // stride + 1


def onnx_model(layers: list[Layer]) -> bytes:
    """The network as an ONNX model: input ``chips`` (n, 3, 150, 150), float32, already
    (rgb - mean) / 256 (``FaceResNet.run`` does that); output ``descriptor`` (n, 128)."""
    g = _Graph()
    x, shape = "chips", (3, CHIP_SIZE, CHIP_SIZE)
    block_in: tuple[str, tuple[int, int, int]] = (x, shape)
    shortcut: tuple[str, tuple[int, int, int]] | None = None
    # a residual block starts at the first convolution after the stem's pool or after the
    # previous block's add + relu (the relu inside a block is not a start)
    block_starts = False
    i = 1
    while i < len(layers):
        lay = layers[i]
        if lay.kind == "con":
            w, b = lay.params
            if i + 1 < len(layers) and layers[i + 1].kind == "affine":  # fold the batch norm
                gamma, beta = layers[i + 1].params
                w, b = w * gamma[:, None, None, None], b * gamma + beta
                i += 1
            if block_starts:
                block_in, shortcut, block_starts = (x, shape), None, False
            (kh, kw), (sy, sx), (py, px) = lay.window, lay.stride, lay.padding
            x = g.node(
                "Conv",
                [x, g.const(w.astype(np.float32)), g.const(b.astype(np.float32))],
                kernel_shape=(kh, kw),
                strides=(sy, sx),
                pads=(py, px, py, px),
            )
            shape = (w.shape[0], _out(shape[1], kh, sy, py), _out(shape[2], kw, sx, px))
        elif lay.kind == "relu":
            x = g.node("Relu", [x])
            block_starts = layers[i - 1].kind == "add_prev"
        elif lay.kind == "max_pool":
            (kh, kw), (sy, sx), (py, px) = lay.window, lay.stride, lay.padding
            x = g.node(
                "MaxPool", [x], kernel_shape=(kh, kw), strides=(sy, sx), pads=(py, px, py, px)
            )
            shape = (shape[0], _out(shape[1], kh, sy, py), _out(shape[2], kw, sx, px))
            block_starts = True
        elif lay.kind == "avg_pool" and lay.window == (0, 0):
            x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
            shape = (shape[0], 1, 1)
        elif lay.kind == "avg_pool":  # a downsampling block's shortcut: its input, pooled
            (kh, kw), (sy, sx), (py, px) = lay.window, lay.stride, lay.padding
            src, s = block_in
            pooled = g.node(
                "AveragePool", [src], kernel_shape=(kh, kw), strides=(sy, sx), pads=(py, px, py, px)
            )
            shortcut = (pooled, (s[0], _out(s[1], kh, sy, py), _out(s[2], kw, sx, px)))
        elif lay.kind == "add_prev":
            other, oshape = shortcut or block_in
            to = (
                max(shape[0], oshape[0]),
                max(shape[1], oshape[1]),
                max(shape[2], oshape[2]),
            )
            x = g.node("Add", [g.pad_to(x, shape, to), g.pad_to(other, oshape, to)])
            shape, shortcut = to, None
        elif lay.kind == "fc":
            w, bias = lay.params
            x = g.node("MatMul", [x, g.const(w.astype(np.float32))])
            if bias.size:
                x = g.node("Add", [x, g.const(bias.astype(np.float32))])
            shape = (w.shape[1], 1, 1)
        else:
            raise BackendUnavailable(f"face ResNet: a {lay.kind} layer where none belongs")
        i += 1
    g.node("Identity", [x], out="descriptor")
    graph = (
        b"".join(_bytes(1, n) for n in g.nodes)
        + _bytes(2, "dlib_face_resnet")
        + b"".join(_bytes(5, t) for t in g.inits)
        + _bytes(11, _value_info("chips", ("n", 3, CHIP_SIZE, CHIP_SIZE)))
        + _bytes(12, _value_info("descriptor", ("n", shape[0])))
    )
    return (
        _int(1, _IR_VERSION)
        + _bytes(2, "loraforge")
        + _bytes(7, graph)
        + _bytes(8, _bytes(1, "") + _int(2, _OPSET))
    )


class FaceResNet:
    """``descriptor(image_rgb, shape)``: what dlib's compute_face_descriptor(image, shape)
    returns (raw, 128 values), with dlib cutting the chip and ONNX Runtime running the net.
    Thread-safe: ONNX Runtime sessions take concurrent runs."""

    def __init__(self, dlib: Any, model: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - depends on the install
            raise BackendUnavailable(
                "onnxruntime is not installed; install loraforge[curation]"
            ) from e
        layers = read_layers(model)
        self._mean = layers[0].params[0].reshape(1, 3, 1, 1)
        opts = ort.SessionOptions()
        # one thread a run: curation measures clips on parallel threads (pipeline.measure_all)
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            onnx_model(layers), opts, providers=["CPUExecutionProvider"]
        )
        self._dlib = dlib

    def descriptor(self, image_rgb: np.ndarray, shape: Any) -> np.ndarray:
        chip = np.asarray(self._dlib.get_face_chip(image_rgb, shape, CHIP_SIZE, CHIP_PADDING))
        out: np.ndarray = self.run(chip[None])[0]
        return out

    def run(self, chips_rgb: np.ndarray) -> np.ndarray:
        """Descriptors of (n, 150, 150, 3) uint8 RGB chips."""
        x = (chips_rgb.astype(np.float32).transpose(0, 3, 1, 2) - self._mean) / 256.0
        out = self._session.run(["descriptor"], {"chips": np.ascontiguousarray(x)})[0]
        return np.asarray(out, np.float32)
