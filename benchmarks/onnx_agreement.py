"""How closely ONNX Runtime reproduces funcnn's evaluation-mode outputs after ``funcnn.export.to_onnx``.

    pip install -e ".[onnx]"
    python benchmarks/onnx_agreement.py

Prints, per network (float32, a batch of 500 random inputs), ``max|ort - funcnn| / max|funcnn|``.
"""

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

import funcnn as fn
import funcnn.export

NETS = {
    "digits convnet": (fn.nets.three_layer_convnet(num_filters=32, filter_size=3, hidden_dim=100), (1, 8, 8)),
    "fc + batch norm + dropout": (fn.nets.fc_net((64, 32), batch_norm=True, dropout=0.3), (64,)),
    "residual": (
        fn.chain(
            fn.conv(1, 1, filters=4, kernel_size=3),
            fn.residual(fn.sandwich(fn.conv(1, 1, filters=4, kernel_size=3), fn.relu)),
            fn.global_avg_pool,
            fn.dense(10),
        ),
        (3, 8, 8),
    ),
}


def main() -> None:
    rng = np.random.default_rng(0)
    for name, (net, shape) in NETS.items():
        _, params = fn.init_params(net, rng, shape, np.float32)
        state = fn.init_state(net, shape, np.float32)
        x = rng.standard_normal((500, *shape)).astype(np.float32)
        if net.moded:  # running statistics moved away from their initial values
            _, _, state = net.run(params, x, state, train=True, rng=np.random.default_rng(1))
        y, _, _ = fn.run(net, params, x, state, train=False)
        path = Path(tempfile.mkdtemp()) / "net.onnx"
        funcnn.export.to_onnx(net, params, shape, path, state if net.moded else None)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = session.run(None, {session.get_inputs()[0].name: x})[0]
        print(f"{name:<28} max|ort - funcnn| / max|funcnn| = {np.abs(out - y).max() / np.abs(y).max():.2e}")


if __name__ == "__main__":
    main()
