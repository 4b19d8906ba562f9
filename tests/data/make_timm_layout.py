"""Regenerate ``timm_nextvit_small_layout.json``: which key of timm's
Next-ViT-S holds which tensor of the upstream (bytedance/Next-ViT) layout,
as timm itself decides it.

    pip install timm torchvision        # any timm with models/nextvit.py
    python tests/data/make_timm_layout.py          # compare
    python tests/data/make_timm_layout.py --write  # overwrite

timm converts an upstream checkpoint by position
(``timm.models.nextvit.checkpoint_filter_fn`` pairs the i-th key of its
model's state dict with the i-th tensor of the upstream file). This script
applies that rule to timm's ``nextvit_small`` and the upstream key list of
``nextvit_small_parity.pt`` (made from the upstream code), checks that
every pair agrees in shape, and stores the pairs: a layout fixture that
does not come from this repository's own converter.
"""
import argparse
import json
import os.path as osp

import timm
import torch

HERE = osp.dirname(osp.abspath(__file__))
FIXTURE = osp.join(HERE, 'timm_nextvit_small_layout.json')


def pairs():
    upstream = torch.load(
        osp.join(HERE, 'nextvit_small_parity.pt'),
        weights_only=False)['arches']['small']['det']['keys']
    model = timm.create_model('nextvit_small', pretrained=False)
    ours = list(model.state_dict().items())
    assert len(ours) == len(upstream), (len(ours), len(upstream))
    found = []
    for (timm_key, tensor), (upstream_key, shape) in zip(ours, upstream):
        assert tuple(tensor.shape) == tuple(shape), (timm_key, upstream_key)
        found.append([timm_key, upstream_key, list(shape)])
    return dict(timm=timm.__version__, model='nextvit_small', pairs=found)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--write', action='store_true')
    args = parser.parse_args()
    made = pairs()
    if args.write:
        with open(FIXTURE, 'w') as f:
            f.write('{"timm": %s, "model": %s, "pairs": [\n' % (
                json.dumps(made['timm']), json.dumps(made['model'])))
            f.write(',\n'.join(json.dumps(p) for p in made['pairs']))
            f.write('\n]}\n')
        print(f'wrote {len(made["pairs"])} pairs to {FIXTURE}')
        return
    with open(FIXTURE) as f:
        stored = json.load(f)
    same = stored['pairs'] == made['pairs']
    print(f'{len(made["pairs"])} pairs, '
          f'{"the same as" if same else "DIFFERENT from"} {FIXTURE}')


if __name__ == '__main__':
    main()
