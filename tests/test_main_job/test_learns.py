# Copyright (c) mmnextvit contributors. All rights reserved.
"""The main job's Next-ViT-S Mask R-CNN learns: the session's run of
demo/main_job.py (main_job_run.py: TRAIN_ITERS = 150 iterations of
tools/train.py from scratch with the config's model, data pipeline and
optimiser, seed 0) lowers its loss and detects the 50 held-out shapes far
better than an untrained model.

Measured with this code (torch 2.13, fp32), COCO AP on the 50 held-out
images of the shapes data (generator version 2):

- untrained (the config's initialisation, ``model.init_weights()``, then
  ``Runner.test``; seeds 0 and 1): bbox AP 0.000 (AP50 0.001 and 0.000),
  segm AP 0.000;
- this test's run (150 iterations, warm-up 20, seed 0; 2-core AMD EPYC,
  one thread in a pytest-xdist worker, 2026-12-02): loss 3.202 (lowest of
  the first three logged values) -> 1.106 (mean of the last three), a
  ratio of 0.35; its checkpoint evaluated with the config's 100 RPN
  proposals per image (``tools/test.py``, 2026-12-07): bbox AP 0.446 (AP50
  0.917), segm AP 0.555 (0.387 and 0.485 on 1000 proposals);
- the full main job (600 iterations, ``make demo``, no fixed seed): bbox /
  segm AP 0.778 / 0.819 (2026-12-07; earlier runs on 1000 proposals
  0.727-0.782 / 0.805-0.831).

MIN_AP = 0.2 is less than half of the measured 150-iteration values, so a
different CPU's rounding (the seed fixes the data order and the
initialisation, not the floating-point order of every kernel) does not fail
the test, while an untrained model has no AP at all: reaching it takes
boxes that overlap the objects at IoU 0.5-0.95 with the right class.

The loss: its first logged values (means over 10 iterations) are inflated by
the untrained mask head during warmup, so the final value is compared with
the lowest of the first three (iterations 10-30); 0.5 leaves room above the
measured 0.35.
"""
from main_job_run import TRAIN_ITERS

MIN_AP = 0.2
MAX_LOSS_RATIO = 0.5


def test_loss_falls(shapes_run):
    records = [s for s in shapes_run['scalars'] if 'loss' in s]
    assert records[-1]['step'] == TRAIN_ITERS
    early = min(r['loss'] for r in records[:3])
    final = sum(r['loss'] for r in records[-3:]) / 3
    print(f'loss: lowest of the first three {early:.3f}, final {final:.3f}')
    assert final <= MAX_LOSS_RATIO * early, (early, final)


def test_bbox_ap_on_the_held_out_split(shapes_run):
    (metrics, ) = [s for s in shapes_run['scalars'] if 'coco/bbox_mAP' in s]
    print({k: v for k, v in metrics.items() if k.startswith('coco/')})
    assert metrics['coco/bbox_mAP'] >= MIN_AP, metrics
    # The masks are learnt as well as the boxes.
    assert metrics['coco/segm_mAP'] >= MIN_AP, metrics
