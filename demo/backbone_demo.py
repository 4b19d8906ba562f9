# Copyright (c) mmnextvit contributors. All rights reserved.
"""Build each Next-ViT variant, run it on an image-sized tensor and print the
pyramid it returns, its size, its FLOPs and the effect of deploy folding."""
import argparse
import time

import torch
from mmengine.analysis import get_model_complexity_info

from mmnextvit.models import NextViT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--arch', nargs='+', default=['small', 'base',
                                                      'large'])
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224])
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.rand(1, 3, *args.shape)
    print(f'input {tuple(x.shape)}')
    for arch in args.arch:
        model = NextViT(arch=arch)
        model.init_weights()
        model.eval()
        with torch.no_grad():
            start = time.perf_counter()
            outs = model(x)
            eager_ms = (time.perf_counter() - start) * 1e3
            flops = get_model_complexity_info(
                model, inputs=(x, ), show_table=False,
                show_arch=False)['flops']
            model.switch_to_deploy()
            deployed = model(x)
        params = sum(p.numel() for p in NextViT(arch=arch).parameters())
        drift = max(((a - b).abs().max() / b.abs().max()).item()
                    for a, b in zip(deployed, outs))
        shapes = '  '.join(str(tuple(o.shape[1:])) for o in outs)
        print(f'Next-ViT-{arch:<5}  params {params / 1e6:5.1f}M  '
              f'{flops / 1e9:5.2f} GMACs  {eager_ms:6.0f} ms  '
              f'deploy drift {drift:.1e}\n  outputs (C, H, W): {shapes}')


if __name__ == '__main__':
    main()
