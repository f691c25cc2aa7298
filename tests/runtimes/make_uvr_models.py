"""Tiny MDX-Net and VR models of the real formats, for the audio-separator tests (run with the env's Python).

    python make_uvr_models.py mdx OUT.onnx --dim-f 2560 --dim-t 8
    python make_uvr_models.py vr OUT.pth --param 1band_sr44100_hl1024 [--nout 16 --nout-lstm 128] [--seed 0]

MDX-Net: an ONNX graph with the input/output UVR's MDX models have ("input"/"output", batch x 4 x dim_f x
2**dim_t spectrogram frames) that scales each of the 4 channels by a fixed weight: a few hundred bytes.
VR: audio-separator's own VR network (nets_new.CascadedNet for 5.1 models with nout/nout_lstm, else
nets.determine_model_capacity for the smallest 5.0 size) for the param set's bins, random weights, saved as
a half-precision state dict (the library copies it into its float32 network).
"""

from __future__ import annotations

import argparse
import os


def make_mdx(out: str, dim_f: int, dim_t: int) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = ["batch", 4, dim_f, 2 ** dim_t]
    scale = numpy_helper.from_array(np.array([0.6, 0.5, 0.4, 0.3], dtype=np.float32).reshape(1, 4, 1, 1), "scale")
    graph = helper.make_graph([helper.make_node("Mul", ["input", "scale"], ["output"])], "tiny_mdx",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)], [scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime the env may hold
    onnx.checker.check_model(model)
    onnx.save(model, out)


def make_vr(out: str, param: str, nout: int | None, nout_lstm: int | None, seed: int) -> None:
    import audio_separator
    import torch
    from audio_separator.separator.uvr_lib_v5.vr_network import nets, nets_new
    from audio_separator.separator.uvr_lib_v5.vr_network.model_param_init import ModelParameters

    params = os.path.join(os.path.dirname(audio_separator.__file__), "separator", "uvr_lib_v5", "vr_network",
                          "modelparams", f"{param}.json")
    bins = ModelParameters(params).param["bins"]
    torch.manual_seed(seed)
    if nout is not None:
        net = nets_new.CascadedNet(bins * 2, 0, nout=nout, nout_lstm=nout_lstm)
    else:
        net = nets.determine_model_capacity(bins * 2, 31191)  # the size the library picks for a small file
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("mdx", "vr"))
    parser.add_argument("out")
    parser.add_argument("--dim-f", type=int)
    parser.add_argument("--dim-t", type=int)
    parser.add_argument("--param")
    parser.add_argument("--nout", type=int)
    parser.add_argument("--nout-lstm", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.kind == "mdx":
        make_mdx(args.out, args.dim_f, args.dim_t)
    else:
        make_vr(args.out, args.param, args.nout, args.nout_lstm, args.seed)


if __name__ == "__main__":
    main()
