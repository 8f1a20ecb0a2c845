"""The network of a checkpoint that ``fn.fit`` wrote from Python (its config names the network but holds
none of ``funcnn train``'s options): rebuilt when it is the course's three-layer convnet, from the saved
params' shapes and the network's name."""

from __future__ import annotations

import math
import re
from typing import Any

from funcnn.core import Layer
from funcnn.nets import three_layer_convnet
from funcnn.training import load_checkpoint

PYTHON_ROUTE = "export it from Python with funcnn.export.to_onnx(net, params, input_shape, path)"


def rebuilt_net(checkpoint: str, config: dict[str, Any]) -> tuple[Layer, tuple[int, ...]]:
    """The network that ``fn.fit`` saved in ``checkpoint`` with ``config``, and one example's shape;
    ValueError naming the Python route unless it is the course's convnet on square images (the sizes come
    from the params' shapes, batch norm and dropout from the name, which must then match exactly)."""
    name = config.get("net")
    refused = ValueError(
        f"checkpoint {checkpoint}: its network ({str(name)[:80]}) is not one that funcnn export can rebuild "
        f"(funcnn train's convnet); {PYTHON_ROUTE}"
    )
    if not isinstance(name, str) or not name.startswith("chain(sandwich(conv("):
        raise refused
    like = {"best_params": tuple({"w": None} for _ in range(3))}
    try:
        conv, hidden, scores = (p["w"].shape for p in load_checkpoint(checkpoint, like, strict=False)["best_params"])
    except (ValueError, KeyError, TypeError):
        raise refused from None
    if len(conv) != 4 or len(hidden) != 2 or len(scores) != 2:
        raise refused
    filters, channels, filter_size, _ = conv
    side = 2 * math.isqrt(hidden[0] // filters) if filters else 0  # 2x2 pooling halves each side
    dropout = re.search(r"dropout\(drop_prob=([0-9.e-]+)\)", name)
    batch_norm, drop = "batch_norm(" in name, float(dropout.group(1)) if dropout else 0.0
    try:
        net = three_layer_convnet(filters, filter_size, hidden[1], scores[1], batch_norm, drop)
    except ValueError:
        raise refused from None
    if net.name != name or filters * (side // 2) ** 2 != hidden[0]:
        raise refused
    return net, (channels, side, side)
