# Copyright (c) mmnextvit contributors. All rights reserved.
"""What the latency benchmark (:mod:`.latency_benchmark`) derives from its
rows and how it shows them: ratios to the reference model, achieved FLOP
rates and int8 speed-ups (:func:`complete`), the tables printed
(:func:`report`) and the bar chart (:func:`draw`)."""
from typing import Iterator, List, Optional

from mmnextvit.deploy import engines

__all__ = [
    'REFERENCE', 'complete', 'table', 'int8_table', 'parts_table',
    'report', 'draw'
]

# The backbone every other one is compared with (``x R-101``).
REFERENCE = 'resnet101'


def _reference(row: dict, results: List[dict],
               reference_config: str) -> Optional[dict]:
    """The row ``row`` is compared with: for a whole model the reference
    config's in the same engine and precision, for a backbone ResNet-101's
    in the same precision; both at the same size."""
    if row['kind'] == 'model':
        return next(
            (r for r in results
             if r['kind'] == 'model' and r['config'] == reference_config
             and '+deploy' not in r['model'] and r['engine'] == row['engine']
             and r['precision'] == row['precision']
             and r['size'] == row['size']), None)
    return next(
        (r for r in results if r['model'].split(' (')[0] == REFERENCE
         and r['precision'] == row['precision']
         and r['size'] == row['size']), None)


def _float_twins(row: dict, results: List[dict]) -> Iterator[dict]:
    """The rows of the same file as the int8 row ``row``, timed in the
    engine's float precisions at the same size."""
    base = row['model'].split(' [')[0]
    for other in results:
        if (other['size'] == row['size'] and other is not row
                and other['precision'] != 'int8'
                and other['engine'] == row['engine']
                and other['model'].split(' (')[0].split(' [')[0] == base
                and '+deploy' not in other['model']):
            yield other


def complete(results: List[dict], ceiling: Optional[float],
             reference_config: str) -> None:
    """Add to each row its ``ratio`` to the reference, its achieved
    ``gflop_per_s`` and ``ceiling_share`` (% of ``ceiling``), and to each
    int8 row its ``speedup_vs_<precision>`` over the same file in float."""
    for row in results:
        reference = _reference(row, results, reference_config)
        row['ratio'] = (row['median_ms'] / reference['median_ms']
                        if reference else None)
    for row in results:
        gflops = row['gflops']
        rate = gflops / (row['median_ms'] / 1e3) if gflops else None
        share = 100 * rate / ceiling if rate and ceiling else None
        row['gflop_per_s'], row['ceiling_share'] = rate, share
    for row in results:
        if row.get('precision') == 'int8':
            for other in _float_twins(row, results):
                row[f'speedup_vs_{other["precision"]}'] = (
                    other['median_ms'] / row['median_ms'])


def table(results: List[dict]) -> str:
    """The main table, one line per row of :func:`complete`'d results."""
    extra = any(row.get('ready_s') is not None for row in results)
    head = (f'{"size":>9} {"model":<30} {"ms":>9} {"IQR ms":>15} '
            f'{"x R-101":>8} {"GFLOPs":>8} {"GFLOP/s":>8} {"% ceil":>7} '
            f'{"peak MiB":>9}')
    if extra:
        head += f' {"ready s":>8} {"rel err":>8}'
    lines = [head, '-' * len(head)]
    for row in results:
        lo, hi = row['iqr_ms']
        gflops, rate, share = (row['gflops'], row['gflop_per_s'],
                               row['ceiling_share'])
        cells = [
            f'{row["size"]:>9}', f'{row["model"]:<30}',
            f'{row["median_ms"]:9.1f}', f'{f"{lo:.1f}-{hi:.1f}":>15}',
            f'{row["ratio"]:8.2f}' if row['ratio'] else f'{"-":>8}',
            f'{gflops:8.1f}' if gflops else f'{"-":>8}',
            f'{rate:8.1f}' if rate else f'{"-":>8}',
            f'{share:6.0f}%' if share else f'{"-":>7}',
            f'{row["peak_mib"]:9.0f}'
            if row['peak_mib'] is not None else f'{"-":>9}'
        ]
        if extra:
            ready, err = row.get('ready_s'), row.get('rel_err')
            cells += [
                f'{ready:8.1f}' if ready is not None else f'{"-":>8}',
                f'{err:8.1e}' if err is not None else f'{"-":>8}'
            ]
        lines.append(' '.join(cells))
    return '\n'.join(lines)


def int8_table(results: List[dict]) -> str:
    """One line per int8 row: how much faster it runs than the same file
    in each float precision (their medians, from the same rounds), and for
    whole models the share of node time in int8 kernels."""
    lines = []
    for row in results:
        if row.get('precision') != 'int8':
            continue
        speedups = [
            f'{other["median_ms"] / row["median_ms"]:.2f}x vs '
            f'{other["precision"]}' for other in _float_twins(row, results)
        ]
        kernels = (row.get('parts') or {}).get('kernels_ms')
        share = ''
        if kernels:
            total = sum(kernels.values()) or 1.
            share = '; node time ' + ', '.join(
                f'{kind} {100 * ms / total:.0f}%'
                for kind, ms in kernels.items())
        lines.append(f'{row["size"]:>9} {row["model"]:<30} int8 '
                     f'{", ".join(speedups) or "-"}{share}')
    return '\n'.join(lines)


def parts_table(results: List[dict]) -> str:
    """One line per exported whole model: its parts, and its backbone
    inside against the backbone exported alone (profiled alike)."""
    lines = []
    for row in results:
        found = row.get('parts')
        if not found:
            continue
        inside = found['parts_ms']['backbone']
        alone = found['backbone_alone_ms']
        lines.append(f'{row["size"]:>9} {row["model"]:<30} '
                     f'{engines.parts_line(found["parts_ms"])}; backbone '
                     f'alone {alone:.0f} ms (inside / alone '
                     f'{inside / alone:.2f})')
    return '\n'.join(lines)


def report(results: List[dict], info: dict, reference_config: str) -> str:
    """Everything printed after the run: the tables of :func:`complete`'d
    ``results`` and the machine ``info`` they were measured on."""
    blocks = ['', table(results)]
    speedups = int8_table(results)
    if speedups:
        blocks += [
            '\nint8 against the same exported file in float (medians of '
            'the same rounds):', speedups
        ]
    parts = parts_table(results)
    if parts:
        blocks += [
            '\nwhere the time goes (engine profiler; parts add up to the '
            'time of the graph\'s nodes):', parts
        ]
    blocks += [
        '',
        f'{info["date"]}  {info["cpu"]}, {info["cores"]} cores, '
        f'{info["threads"]} threads, torch {info["torch"]}, '
        f'{info["device"]} {info["engine"]} {info["dtype"]}, batch '
        f'{info["batch"]}, {info["reps"]} rounds, allocator: '
        f'{info["allocator"]}; load average before '
        f'{info["loadavg_before"]}, after {info["loadavg_after"]}'
    ]
    ceiling = info['ceiling_gflop_per_s']
    if ceiling:
        rates = ', '.join(
            f'{name} {rate:.1f}'
            for name, rate in info['ceiling_kernels_gflop_per_s'].items())
        blocks.append(
            f'ceiling: {info["ceiling_kernel"]} at {ceiling:.1f} GFLOP/s '
            f'(median; {rates}); x R-101 = median / median of resnet101 at '
            'that size (whole models: of '
            f'{reference_config or "the last --config"} in the same '
            'engine); peak MiB = resident-set growth during one forward')
    return '\n'.join(blocks)


def draw(results: List[dict], path: str) -> None:
    """Bars of each model's ratio to ResNet-101 (or its median where some
    row has no ratio) per size, into the image file ``path``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    sizes = list(dict.fromkeys(r['size'] for r in results))
    models = list(dict.fromkeys(r['model'] for r in results))
    use_ratio = all(r['ratio'] for r in results)
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(sizes) * len(models)
                                        * 0.35 + 3), 4.5))
    for i, model in enumerate(models):
        xs, ys = [], []
        for j, size in enumerate(sizes):
            row = next((r for r in results
                        if r['model'] == model and r['size'] == size), None)
            if row is not None:
                xs.append(j + (i - (len(models) - 1) / 2) * width)
                ys.append(row['ratio'] if use_ratio else row['median_ms'])
        ax.bar(xs, ys, width, label=model)
    ax.set_xticks(range(len(sizes)), sizes)
    if use_ratio:
        ax.axhline(1., color='black', linewidth=0.8)
        ax.set_ylabel('latency / ResNet-101 latency (median)')
    else:
        ax.set_ylabel('median latency (ms)')
    ax.set_xlabel('input size (HxW)')
    ax.legend(fontsize=7, ncol=2)
    ax.set_title('inference latency, batch 1')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
