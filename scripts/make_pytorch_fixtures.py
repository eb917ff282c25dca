"""Write three tiny PyTorch state-dict fixtures for anu's `.pth` loader tests (a fixture aid only;
anu itself never runs Python, and the files are committed so tests need no torch).

Writes into tests/fixtures/ (each a few KB):
  tiny-legacy.pth  the `Tiny` state dict in torch's legacy (non-zip) pickle format
                   (`torch.save(..., _use_new_zipfile_serialization=False)`);
  tiny-zip.pth     the same state dict in torch's default zip format;
  tiny-wrong.pth   zip format, deliberately mismatched: `_fc.weight` is [5,3] and `_fc.bias` is [5],
                   `_bn.running_var` is missing, and an extra key `_extra.weight` = zeros(2) is present.

Every float tensor with n elements holds (arange(n) + offset) / 100 in row-major order, with
offsets _conv.weight 0, _bn.weight 100, _bn.bias 200, _bn.running_mean 300, _bn.running_var 400,
_blocks.0._depthwise_conv.weight 500, _blocks.1._depthwise_conv.weight 600, _fc.weight 700,
_fc.bias 800; `_bn.num_batches_tracked` is 7 (int64).

    pip install torch==2.9.0 numpy
    python scripts/make_pytorch_fixtures.py            # writes tests/fixtures/tiny-*.pth and prints them back
    python scripts/make_pytorch_fixtures.py --out-dir some/dir
"""
import argparse
import os

import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self._depthwise_conv = nn.Conv2d(3, 3, 3, groups=3, bias=False)  # weight [3,1,3,3]


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv = nn.Conv2d(2, 3, 3, bias=False)  # weight [3,2,3,3]
        self._bn = nn.BatchNorm2d(3)  # weight, bias, running_mean, running_var, num_batches_tracked
        self._blocks = nn.ModuleList([Block(), Block()])
        self._fc = nn.Linear(3, 4)  # weight [4,3], bias [4]


OFFSETS = {
    "_conv.weight": 0,
    "_bn.weight": 100,
    "_bn.bias": 200,
    "_bn.running_mean": 300,
    "_bn.running_var": 400,  # values 4.00.. stay positive
    "_blocks.0._depthwise_conv.weight": 500,
    "_blocks.1._depthwise_conv.weight": 600,
    "_fc.weight": 700,
    "_fc.bias": 800,
}


def ramp(shape, offset):
    n = 1
    for d in shape:
        n *= d
    return ((torch.arange(n, dtype=torch.float32) + offset) / 100).reshape(shape)


def tiny_state_dict():
    model = Tiny()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name == "_bn.num_batches_tracked":
                t.fill_(7)
            else:
                t.copy_(ramp(tuple(t.shape), OFFSETS[name]))
    # Plain tensors (not Parameters), detached, in the module's key order.
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def wrong_state_dict():
    sd = tiny_state_dict()
    out = {}
    for k, v in sd.items():
        if k == "_bn.running_var":
            continue
        if k == "_fc.weight":
            v = ramp((5, 3), OFFSETS[k])
        elif k == "_fc.bias":
            v = ramp((5,), OFFSETS[k])
        out[k] = v
    out["_extra.weight"] = torch.zeros(2)
    return out


def describe(path):
    with open(path, "rb") as f:
        head = f.read(2)
    sd = torch.load(path, weights_only=True)
    kind = "zip" if head == b"PK" else "legacy"
    print(f"{path}: {os.path.getsize(path)} bytes, {kind} format")
    for k, v in sd.items():
        print(f"  {k:34s} {str(v.dtype):14s} {list(v.shape)}")
    return head, sd


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out-dir", default=os.path.join(root, "tests", "fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    legacy = os.path.join(args.out_dir, "tiny-legacy.pth")
    zipped = os.path.join(args.out_dir, "tiny-zip.pth")
    wrong = os.path.join(args.out_dir, "tiny-wrong.pth")

    sd = tiny_state_dict()
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    torch.save(sd, zipped)
    torch.save(wrong_state_dict(), wrong)

    head, back = describe(legacy)
    assert head != b"PK", "legacy fixture unexpectedly in zip format"
    assert all(torch.equal(back[k], sd[k]) for k in sd) and list(back) == list(sd)
    head, back = describe(zipped)
    assert head == b"PK", "zip fixture not in zip format"
    assert all(torch.equal(back[k], sd[k]) for k in sd) and list(back) == list(sd)
    head, back = describe(wrong)
    assert head == b"PK"
    assert list(back["_fc.weight"].shape) == [5, 3] and "_bn.running_var" not in back
    assert torch.equal(back["_extra.weight"], torch.zeros(2))


if __name__ == "__main__":
    main()
