# Copyright (c) mmnextvit contributors. All rights reserved.
"""Resident memory over many inference calls at mixed image sizes, in one
process: does it stop growing after warm-up?

    python tools/analysis_tools/inference_memory.py [CONFIG]
        [--weights CKPT] [--calls 500] [--warmup 50] [--seed 0]
        [--max-growth-mb MB] [--return-freed-memory] [--json]
        [--trace FILE] [--cfg-options KEY=VALUE ...]

Each call runs the model of CONFIG (default: the bundled CPU detection
config) on a new random image whose size is drawn from a mixed list (small
and large, square and elongated), through the task's own API
(``inference_detector`` for mmdet configs, ``inference_model`` for mmseg
ones), exactly as a service would. The resident set size is read from
``/proc/self/statm`` after every call. Printed: the RSS after loading the
model, after the warm-up calls and at the end, the peak after warm-up, the
growth per 100 calls over the calls after warm-up (least squares), and the
"window growth": the peak RSS of the last third of the calls after warm-up
less the peak of the first third. RSS moves up and down by tens of MiB
from call to call as differently sized buffers are allocated and returned,
so peaks of windows say more than single readings. With
``--max-growth-mb`` the exit status is 1 when the window growth is larger.

With ``--return-freed-memory`` glibc serves every block over 64 KiB by mmap
and returns freed memory at once, so the RSS follows the memory the process
really holds. Without it the RSS also shows what the allocator keeps for
reuse, which moves in steps: the 30-call run below measured window growths
of 0.0 to 37.0 MiB (a one-off step, flat afterwards: +0.1 MiB over calls 30
to 120), and 3.0 to 3.3 MiB in five runs with the flag.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import List, Tuple

import numpy as np

import mmnextvit  # noqa: F401  (registers the backbone, safe loading)
from mmnextvit.analysis.memory import return_freed_memory_at_once
from mmnextvit.cli import (ToolError, add_cfg_options, build_model,
                           check_checkpoint, init_task, load_config, run_tool)

DEFAULT_CONFIG = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'bundled_data', 'nextvit_s_shapes-cpu.py')

# (height, width): small and large, square, portrait and landscape. The
# test pipelines rescale them, so the model sees as many input shapes.
SIZES: Tuple[Tuple[int, int], ...] = ((64, 64), (96, 160), (128, 128),
                                      (200, 120), (256, 256), (320, 240),
                                      (480, 360), (512, 512), (72, 300),
                                      (300, 72))


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux)."""
    with open('/proc/self/statm') as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf('SC_PAGE_SIZE') / 2**20


def slope_per_100(values: List[float]) -> float:
    """Least-squares growth of ``values`` per 100 calls."""
    if len(values) < 2:
        return 0.0
    x = np.arange(len(values), dtype=np.float64)
    return float(np.polyfit(x, np.asarray(values), 1)[0] * 100)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Resident memory over repeated inference at mixed '
        'image sizes.')
    parser.add_argument(
        'config', nargs='?', default=DEFAULT_CONFIG,
        help='detection or segmentation config (default: the bundled CPU '
        'detection config)')
    parser.add_argument(
        '--weights', help='checkpoint (default: the untrained model)')
    parser.add_argument('--calls', type=int, default=500)
    parser.add_argument(
        '--warmup', type=int, default=50,
        help='calls before the memory is expected to level off')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--every', type=int, default=50, help='print a line every N calls')
    parser.add_argument(
        '--max-growth-mb', type=float,
        help='exit with status 1 if the memory after warm-up grows more')
    parser.add_argument(
        '--return-freed-memory', action='store_true',
        help='make glibc return freed memory at once, so the RSS follows '
        'the live memory rather than the allocator\'s cache (Linux)')
    parser.add_argument(
        '--json', action='store_true', help='end with a JSON summary line')
    parser.add_argument(
        '--trace', metavar='FILE',
        help='write the RSS after every call (MiB, one per line) here')
    add_cfg_options(
        parser, 'the test resize scale '
        'test_dataloader.dataset.pipeline.1.scale="(128,128)"')
    args = parser.parse_args(argv)
    if not 0 <= args.warmup < args.calls:
        raise ToolError(f'--warmup {args.warmup} must be below --calls '
                        f'{args.calls}; give fewer warm-up calls')
    return args


def build(cfg, task: str, weights):
    if task == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        model = init_detector(cfg, weights, device='cpu')
        return lambda image: inference_detector(model, image)
    from mmseg.apis import inference_model, init_model
    model = init_model(cfg, weights, device='cpu')
    return lambda image: inference_model(model, image)


@run_tool
def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    task = init_task(cfg)
    if args.return_freed_memory and not return_freed_memory_at_once():
        raise ToolError('--return-freed-memory needs Linux with glibc; '
                        'drop the flag')
    if args.weights:
        check_checkpoint(cfg, args.weights, flag='--weights',
                         model=build_model(cfg))
    infer = build(cfg, task, args.weights)

    rng = np.random.default_rng(args.seed)
    loaded = rss_mb()
    trace, start, cpu = [], time.perf_counter(), time.process_time()
    print(f'{task} model of {args.config}: RSS {loaded:.1f} MiB after '
          f'loading', flush=True)
    for call in range(1, args.calls + 1):
        height, width = SIZES[int(rng.integers(len(SIZES)))]
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        infer(image)
        trace.append(rss_mb())
        if call % args.every == 0 or call == args.calls:
            print(f'call {call:4d}: RSS {trace[-1]:7.1f} MiB '
                  f'({time.perf_counter() - start:.0f} s)', flush=True)

    if args.trace:
        with open(args.trace, 'w') as f:
            f.write(''.join(f'{value:.2f}\n' for value in trace))
    after = trace[args.warmup:]
    at_warmup = trace[args.warmup - 1] if args.warmup else loaded
    third = max(1, len(after) // 3)
    window_growth = max(after[-third:]) - max(after[:third])
    report = dict(
        config=args.config,
        cfg_options=args.cfg_options or {},
        calls=args.calls,
        warmup=args.warmup,
        rss_loaded_mb=round(loaded, 1),
        rss_after_warmup_mb=round(at_warmup, 1),
        rss_final_mb=round(trace[-1], 1),
        rss_peak_after_warmup_mb=round(max(after), 1),
        growth_after_warmup_mb=round(trace[-1] - at_warmup, 1),
        window_growth_mb=round(window_growth, 1),
        slope_after_warmup_mb_per_100_calls=round(slope_per_100(after), 2),
        seconds=round(time.perf_counter() - start, 1),
        cpu_seconds=round(time.process_time() - cpu, 1))
    print(f"warm-up ({args.warmup} calls): {report['rss_loaded_mb']} -> "
          f"{report['rss_after_warmup_mb']} MiB; after it: final "
          f"{report['rss_final_mb']} MiB, peak "
          f"{report['rss_peak_after_warmup_mb']} MiB, growth "
          f"{report['growth_after_warmup_mb']:+} MiB "
          f"({report['slope_after_warmup_mb_per_100_calls']:+} MiB per 100 "
          f"calls), window growth {report['window_growth_mb']:+} MiB",
          flush=True)
    if args.json:
        print(json.dumps(report), flush=True)
    if (args.max_growth_mb is not None
            and window_growth > args.max_growth_mb):
        print(f'inference_memory.py: the peak memory grew '
              f'{window_growth:.1f} MiB after warm-up, more than '
              f'--max-growth-mb {args.max_growth_mb}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
