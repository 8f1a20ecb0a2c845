"""Export a network to ONNX (needs the ``onnx`` extra), in evaluation mode: :func:`to_onnx`. Each op's nodes
come from its exporter in :data:`EXPORTERS` (``@exporter(op)``); :data:`NOT_EXPORTABLE` lists the ops without
an ONNX counterpart and why; :data:`INPUTS` names and types the graph inputs of the ops whose input is not one
float array. A layer family's exporters live in a private module here, imported below."""

from funcnn.export import _attention  # noqa: F401  # registers the attention layers' exporters
from funcnn.export._onnx import EXPORTERS as EXPORTERS
from funcnn.export._onnx import INPUTS as INPUTS
from funcnn.export._onnx import NOT_EXPORTABLE as NOT_EXPORTABLE
from funcnn.export._onnx import OPSET as OPSET
from funcnn.export._onnx import exporter as exporter
from funcnn.export._onnx import to_onnx as to_onnx

__all__ = ["EXPORTERS", "INPUTS", "NOT_EXPORTABLE", "OPSET", "exporter", "to_onnx"]
