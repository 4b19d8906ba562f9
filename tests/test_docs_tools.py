# Copyright (c) mmnextvit contributors. All rights reserved.
"""The measuring commands of docs/benchmarks.md, run as the page writes
them at a tiny size, with what they print checked.

Each test reads its command from the page (through test_readme's parser),
keeps every flag and swaps only the size, the repetitions, the thread
count and the output file, so a flag renamed on the page or in the tool
fails here. About 10-40 s each on one core.
"""
import os.path as osp
import re
import shlex
import subprocess
import sys
from typing import Dict, List, Sequence

import pytest
from test_readme import readme_commands

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FLOAT = r'(\d+(?:\.\d+)?)'


def page_command(script: str, *needles: str) -> List[str]:
    """The argv of the one docs command that runs ``script`` and contains
    every one of ``needles``."""
    found = [
        c for c in readme_commands()
        if c.startswith(f'python {script} ') and all(n in c for n in needles)
    ]
    assert len(found) == 1, (script, needles, found)
    return shlex.split(found[0])


def shrink(argv: Sequence[str],
           values: Dict[str, Sequence[object]]) -> List[str]:
    """``argv`` run by this interpreter, with the values after each flag of
    ``values`` replaced (every one of those flags must be on the page)."""
    out, i, seen = [sys.executable, argv[1]], 2, set()
    while i < len(argv):
        word = argv[i]
        out.append(word)
        i += 1
        if word in values:
            seen.add(word)
            out += [str(v) for v in values[word]]
            while i < len(argv) and not argv[i].startswith('--'):
                i += 1
    assert seen == set(values), f'the page lacks {set(values) - seen}'
    return out


def run(argv: List[str], timeout: int = 120) -> str:
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_profile_nextvit_reports_parts_and_operators():
    """docs/benchmarks.md, "Where the time goes": the part table's shares
    are of the profiled forward, the blocks and the stem cover it, and the
    operator table is sorted."""
    argv = shrink(page_command('tools/analysis_tools/profile_nextvit.py'),
                  {'--sizes': ['64x64'], '--reps': [1], '--threads': [1]})
    out = run(argv)
    header = re.search(
        r'Next-ViT-S deployed, 64x64, batch 1, 1 threads: profiled forward '
        + FLOAT + r' ms \(sum of operator self times\), unprofiled ' + FLOAT
        + r' ms \(median of 1\)', out)
    assert header, out
    total = float(header.group(1))
    assert total > 0 and float(header.group(2)) > 0
    parts_text, ops_text = out.split('operator (self time)')
    parts = {
        m.group(1).strip(): (float(m.group(2)), float(m.group(3)))
        for m in re.finditer(r'^  ( *\S.*?)\s+' + FLOAT + r'\s+' + FLOAT
                             + '%$', parts_text.split('share')[-1], re.M)
    }
    for name in ('stem', 'MHCA (3x3 grouped + 1x1)',
                 'MLP (1x1 expand + 1x1 reduce)', 'E-MHSA total',
                 'NTB total', 'NCB total'):
        assert name in parts, (name, out)
    for ms, share in parts.values():
        # Shares of the total, from unrounded times: both printed to 0.1
        # ms (each up to 0.05 off), the share to 0.1%.
        assert 0 < share <= 100.5, out
        assert share == pytest.approx(
            100 * ms / total,
            abs=100 * 0.05 * (1 / total + ms / total**2) + 0.06), out
    # The disjoint parts cover the forward (the profiler's own time inside
    # the marked ranges can only add to them, most at tiny sizes), and the
    # nested ones lie inside their parents.
    disjoint = ('stem', 'patch embed / projection',
                'MHCA (3x3 grouped + 1x1)', 'MLP (1x1 expand + 1x1 reduce)',
                'E-MHSA total')
    assert sum(parts[k][1] for k in disjoint) >= 80, out
    for inner in ('  of which attention', '  of which token pooling'):
        assert parts[inner.strip()][0] <= parts['E-MHSA total'][0]
    assert parts['E-MHSA total'][0] <= parts['NTB total'][0]
    shares = [
        float(m.group(1)) for m in re.finditer(FLOAT + '%$', ops_text, re.M)
    ]
    assert 1 <= len(shares) <= 10  # --ops 10 by default
    assert shares == sorted(shares, reverse=True)
    assert sum(shares) <= 100.5


def test_train_cost_iteration_times_each_config():
    """docs/benchmarks.md, "Mask R-CNN training iteration": one line per
    config with its time, its rate and its ratio to the last config."""
    argv = shrink(
        page_command('tools/analysis_tools/train_cost.py', 'iteration'), {
            '--size': ['64x64'],
            '--reps': [1],
            '--threads': [1]
        })
    configs = [w for w in argv[3:] if w.endswith('.py')]
    assert len(configs) == 2
    out = run(argv, timeout=180)
    assert re.search(
        r'one training iteration \(loss \+ backward \+ AdamW step\), batch '
        r'1, 64x64, 5 objects, fp32, CPU, 1 threads, median of 1; peak = '
        r'RSS growth', out), out
    rows = {}
    for config in configs:
        m = re.search(
            r'^  ' + re.escape(config) + r'\s+' + FLOAT + r' s \(\s*' + FLOAT
            + r' img/s\)  x' + FLOAT + r' of the last  peak (\d+) MiB$', out,
            re.M)
        assert m, (config, out)
        rows[config] = [float(g) for g in m.groups()]
    (seconds, rate, ratio, peak), last = rows[configs[0]], rows[configs[1]]
    assert seconds > 0 and rate == pytest.approx(1 / seconds, rel=0.02,
                                                 abs=0.01)
    assert last[2] == 1.0
    assert ratio == pytest.approx(seconds / last[0], rel=0.02, abs=0.01)
    assert peak > 0 and last[3] > 0


def test_export_onnx_bench_times_both_runtimes(tmp_path):
    """docs/benchmarks.md, "ONNX export": the dynamic export is checked at
    the export size and a second one, then both runtimes are timed."""
    onnx_file = str(tmp_path / 'nextvit_s.onnx')
    page = page_command('tools/deployment/export_onnx.py', '--dynamic',
                        '--bench')
    assert page[2:4] == ['nextvit-s', 'nextvit_s.onnx'], page
    argv = shrink(page, {
        '--shape': [64, 64],
        '--bench': [1],
        '--threads': [1]
    })
    argv[3] = onnx_file
    out = run(argv)
    assert osp.isfile(onnx_file)
    assert re.search(
        r'wrote ' + re.escape(onnx_file) + r' \(' + FLOAT + r' MiB, opset '
        r'17, dynamic input, norms folded\)', out), out
    for size in ('64x64', '49x51'):  # the export size, then 3/4 of it
        m = re.search(
            f'check {size}: max relative difference ([0-9.e+-]+) over 4 '
            r'output\(s\) \(ok, tolerance 0.0001\)', out)
        assert m and float(m.group(1)) <= 1e-4, (size, out)
    m = re.search(
        r'latency 64x64, batch 1, interleaved, median of 1: PyTorch ' + FLOAT
        + r' ms, ONNX Runtime ' + FLOAT + r' ms \(1 torch threads\)', out)
    assert m, out
    assert float(m.group(1)) > 0 and float(m.group(2)) > 0
