#!/usr/bin/env python3
"""Write the ONNX model behind the `not_qwen_add` fixture: y = x + 1 on float32 [1, 4].

    python make_not_qwen_onnx.py OUT.onnx

Run by build_fixtures.sh with the converter venv's Python (it needs the `onnx` package, which
setup_converter.sh installs there). The compiled bmodel is a valid BM1684X bmodel with one net
named `not_qwen_add`: the engine must refuse it as "not a Qwen2.5-VL bmodel", not crash.
"""
from __future__ import annotations

import sys

import onnx
from onnx import TensorProto, helper


def build() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    node = helper.make_node("Add", ["x", "one"], ["y"], name="add")
    graph = helper.make_graph([node], "not_qwen_add", [x], [y], initializer=[one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="streamproc")
    model.ir_version = 8  # onnx 1.14's checker and onnxruntime 1.16 read IR 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    onnx.save(build(), sys.argv[1])
