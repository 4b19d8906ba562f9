# Copyright (c) mmnextvit contributors. All rights reserved.
"""Convert Next-ViT weights to a clean mmengine backbone checkpoint.

Reads any layout mmnextvit recognises (upstream ImageNet ``{'model': ...}``,
upstream or mmengine detectors and segmentors, timm safetensors or ``.pth``,
flat upstream state dicts), checks every tensor against the matching
Next-ViT variant and writes ``{'state_dict': ..., 'meta': ...}`` in the
upstream key layout, without the classifier head. The result loads with
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` on ``mmnextvit.NextViT``.
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

import torch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert Next-ViT weights of any supported layout to an '
        'mmengine backbone checkpoint.')
    parser.add_argument('src', help='weights to convert (.pth or '
                        '.safetensors)')
    parser.add_argument('dst', help='output checkpoint path (.pth)')
    parser.add_argument(
        '--arch',
        choices=['small', 'base', 'large'],
        help='variant; by default read from the number of blocks in SRC')
    parser.add_argument(
        '--prefix',
        help="take only keys with this prefix, e.g. 'backbone.' (by default "
        "'backbone.' is taken from whole detectors and segmentors)")
    return parser.parse_args()


def convert(src: str, dst: str, arch: str = None, prefix: str = None) -> str:
    """Convert ``src`` to ``dst``; return a one-line summary."""
    from mmnextvit import __version__
    from mmnextvit.models import NextViT
    from mmnextvit.engine.safe_loading import CheckpointError, read_checkpoint
    from mmnextvit.models.checkpoint_layouts import (arch_of_state,
                                                     match_backbone_state,
                                                     to_backbone_state)

    state, layout = to_backbone_state(read_checkpoint(src), prefix)
    found_arch = arch_of_state(state)
    arch = arch or found_arch
    if arch is None:
        raise CheckpointError(
            f"Next-ViT weights: '{src}' holds no Next-ViT blocks "
            f'(features.* or stages.*.blocks.*) of a known variant; pass '
            f'--arch for a custom depth or check that it is a Next-ViT file.')
    # The classifier norm feeds the segmentation mode's last stage: keep it
    # whenever the file has it.
    model = NextViT(arch=arch, with_extra_norm='norm.weight' in state)
    to_load, skipped, kept = match_backbone_state(
        model.state_dict(), state,
        f"Next-ViT-{arch} "
        f"({'segmentation' if model.with_extra_norm else 'detection'}"
        f" layout) converting '{src}' ({layout} layout)")
    meta = dict(
        layout=layout,
        source=osp.basename(src),
        arch=arch,
        with_extra_norm=any(k.startswith('extra_norm_list.')
                            for k in to_load),
        mmnextvit_version=__version__)
    out_dir = osp.dirname(osp.abspath(dst))
    os.makedirs(out_dir, exist_ok=True)
    # Write beside the target and rename, so a failure never leaves a
    # half-written checkpoint under the target name.
    fd, tmp = tempfile.mkstemp(suffix='.tmp', dir=out_dir)
    os.close(fd)
    try:
        torch.save(dict(state_dict=to_load, meta=meta), tmp)
        os.replace(tmp, dst)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    summary = (f'{src} ({layout} layout, Next-ViT-{arch}) -> {dst}: '
               f'{len(to_load)} tensors')
    if skipped:
        summary += f', dropped {len(skipped)} unused'
    if kept:
        summary += f', {len(kept)} absent from the source'
    return summary


def main() -> None:
    args = parse_args()
    from mmnextvit.engine.safe_loading import CheckpointError
    try:
        print(convert(args.src, args.dst, args.arch, args.prefix))
    except (FileNotFoundError, CheckpointError) as err:
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
