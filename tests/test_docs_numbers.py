# Copyright (c) mmnextvit contributors. All rights reserved.
"""The README's headline numbers are those of the JSON each row links.

README.md's "Measured here" table gives each measurement in a row that
links the JSON under docs/benchmarks/ it comes from. Here every row is
read, its JSON loaded, the values computed from it with the rounding the
row uses, and compared with the numbers of the row's result cell, in
order; the row's date and machine must be the JSON's. A row without an
entry in HEADLINES, or an entry without a row, fails, and so does a JSON
link to docs/benchmarks/ outside the table. Also: the README stays a map,
at most 200 lines with the documentation table on its first screen.
"""
import json
import os.path as osp
import re
from typing import Callable, List, Optional, Sequence, Tuple

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
README = osp.join(REPO, 'README.md')
HEADER = '| measured | result | when, where | source |'
LINK = re.compile(r'\]\((docs/benchmarks/[\w.-]+\.json)\)')
NUMBER = re.compile(r'\d+(?:\.\d+)?')


def _get(data: dict, path: str, source: str):
    value = data
    for key in path.split('.'):
        value = value[key]
    if value is None:
        raise AssertionError(
            f'{source}: {path} is null; record the run that measures it '
            f'(its command is in the file) before the README quotes it')
    return value


def _backbone(data: dict, model: str, size: str) -> dict:
    (row, ) = [
        r for r in data['results']
        if r['model'] == model and r['size'] == size
    ]
    return row


def engines_ratios(data: dict, source: str) -> List[str]:
    """Deployed Next-ViT-S / ResNet-101 at the three sizes."""
    return [
        f"{_backbone(data, 'nextvit-s-deploy', size)['ratio']:.2f}"
        for size in ('224x224', '512x512', '800x1216')
    ]


def gpu_fp16_b8(data: dict, source: str) -> List[str]:
    """Compiled (CUDA graphs) fp16, 224x224, batch 8: ratio, both ms."""
    ms = {
        r['model']: r['median_ms']
        for r in data['latency']
        if (r['mode'], r['precision'], r['size'],
            r['status']) == ('compile', 'fp16', '224x224x8', 'ok')
    }
    ours, reference = ms['nextvit-s'], ms['resnet101']
    return [f'{ours / reference:.2f}', f'{ours:.2f}', f'{reference:.2f}']


def whole_model(data: dict, source: str) -> List[str]:
    """Ratio, then both whole models' ms."""
    ours, reference = data['results']
    assert reference['ratio'] == 1.0 and 'NextViT' in ours['backbone']
    return [
        f"{ours['ratio']:.2f}", f"{ours['median_ms']:.0f}",
        f"{reference['median_ms']:.0f}"
    ]


def int8_whole_model(data: dict, source: str) -> List[str]:
    """int8 speed-up over bf16 of Next-ViT-S and of ResNet-101, then the
    int8 ratio."""
    int8 = [r for r in data['results'] if r.get('speedup_vs_bf16')]
    ours, reference = int8
    assert 'NextViT' in ours['backbone'] and reference['ratio'] == 1.0
    return [
        f"{ours['speedup_vs_bf16']:.2f}",
        f"{reference['speedup_vs_bf16']:.2f}", f"{ours['ratio']:.2f}"
    ]


def demo_run(data: dict, source: str) -> List[str]:
    """``make demo``: bbox / segm AP (3 decimals), minutes (1 decimal)."""
    return [
        f"{_get(data, 'mask_rcnn.bbox_mAP', source):.3f}",
        f"{_get(data, 'mask_rcnn.segm_mAP', source):.3f}",
        f"{_get(data, 'mask_rcnn.minutes', source):.1f}"
    ]


def seg_run(data: dict, source: str) -> List[str]:
    """The bundled Semantic FPN run: mIoU (2 decimals)."""
    return [f"{_get(data, 'semfpn.mIoU', source):.2f}"]


# (JSON file, pattern on the row's "measured" cell, its numbers).
HEADLINES: List[Tuple[str, str, Callable[[dict, str], List[str]]]] = [
    ('bundled_runs.json', r'^`make demo`', demo_run),
    ('bundled_runs.json', r'^Semantic FPN', seg_run),
    ('engines_eager_fp32_glibc.json', r'eager fp32, glibc',
     engines_ratios),
    ('engines_eager_fp32.json', r'eager fp32, freed memory kept',
     engines_ratios),
    ('engines_openvino_fp32.json', r'OpenVINO fp32', engines_ratios),
    ('gpu_h200_run2.json', r'GPU, fp16, batch 8, 224x224', gpu_fp16_b8),
    ('whole_maskrcnn_openvino_fp32.json', r'^Whole Mask R-CNN', whole_model),
    ('int8_openvino_semfpn.json', r'int8', int8_whole_model),
]


def when_and_where(data: dict, source: str) -> List[str]:
    """What the "when, where" cell must hold: the date, the machine (CPU
    model or GPU) and, where the file records it, the load."""
    if 'machine' in data:
        return [data['machine']['date'][:10], data['machine']['cpu']]
    if 'environment' in data:
        return [data['environment']['date'][:10], data['environment']['gpu']]
    found = [str(_get(data, 'date', source))[:10], _get(data, 'cpu', source)]
    return found + [str(_get(data, 'load', source))]


def measured_rows(text: str) -> List[List[str]]:
    """The cells of the rows of the README's "Measured here" table."""
    lines = text.splitlines()
    assert HEADER in lines, f'README.md has no table headed {HEADER!r}'
    rows = []
    for line in lines[lines.index(HEADER) + 2:]:
        if not line.startswith('|'):
            break
        rows.append([cell.strip() for cell in line.strip('|').split('|')])
    return rows


def headline(json_name: str, measured: str) -> Optional[Callable]:
    found = [
        numbers for name, pattern, numbers in HEADLINES
        if name == json_name and re.search(pattern, measured)
    ]
    assert len(found) <= 1, (json_name, measured)
    return found[0] if found else None


def check_row(cells: Sequence[str]) -> None:
    measured, result, when, source = cells
    links = LINK.findall(source)
    assert len(links) == 1, f'{measured!r}: link one JSON, not {links}'
    numbers = headline(osp.basename(links[0]), measured)
    assert numbers, (f'{measured!r}: no entry in HEADLINES for '
                     f'{links[0]}; add how its numbers are read')
    with open(osp.join(REPO, links[0]), encoding='utf-8') as f:
        data = json.load(f)
    expected = numbers(data, links[0])
    assert NUMBER.findall(result) == expected, (
        f'README row {measured!r} shows {result!r}; {links[0]} gives '
        f'{expected}')
    for fact in when_and_where(data, links[0]):
        assert fact in when, (
            f'README row {measured!r}: {fact!r} ({links[0]}) is not in '
            f'{when!r}')


def _readme() -> str:
    with open(README, encoding='utf-8') as f:
        return f.read()


@pytest.mark.parametrize('cells', measured_rows(_readme()),
                         ids=lambda cells: cells[0][:40])
def test_each_headline_number_is_its_json_s(cells):
    check_row(cells)


def test_every_headline_has_its_row_and_no_json_link_is_unchecked():
    text = _readme()
    rows = measured_rows(text)
    for name, pattern, _ in HEADLINES:
        assert any(
            re.search(pattern, row[0]) and name in row[3] for row in rows
        ), f'no README row for {name} ({pattern})'
    table = [f"| {' | '.join(row)} |" for row in rows]
    for line in text.splitlines():
        if LINK.search(line):
            assert line in table, (
                f'a benchmark JSON linked outside the "Measured here" '
                f'table, where no test reads it: {line!r}')


def test_a_changed_number_is_caught():
    """Control: a row whose number differs from its JSON fails, and so
    does a row naming another date."""
    (row, ) = [
        r for r in measured_rows(_readme()) if 'gpu_h200_run2' in r[3]
    ]
    check_row(row)
    wrong = list(row)
    wrong[1] = wrong[1].replace('0.89', '0.88', 1)
    with pytest.raises(AssertionError, match='gives'):
        check_row(wrong)
    wrong = list(row)
    wrong[2] = wrong[2].replace('2026-12-04', '2026-12-03')
    with pytest.raises(AssertionError, match='2026-12-04'):
        check_row(wrong)


def test_the_readme_is_a_map():
    lines = _readme().splitlines()
    assert len(lines) <= 200, f'README.md has {len(lines)} lines; keep <= 200'
    assert '## Documentation' in lines[:40]
    table = lines.index('## Documentation')
    for page in ('docs/install.md', 'docs/train.md', 'docs/deploy.md',
                 'docs/deploy_app.md', 'docs/benchmarks.md', 'docs/faq.md',
                 'docs/tutorial.md'):
        assert any(f']({page})' in line for line in lines[table:table + 16]), \
            page


def test_docs_table_pages_exist():
    text = _readme()
    start = text.index('## Documentation')
    section = text[start:text.index('\n## ', start + 1)]
    for target in re.findall(r'\]\(([^)#]+)\)', section):
        assert osp.exists(osp.join(REPO, target)), target
