# Copyright (c) mmnextvit contributors. All rights reserved.
"""Missing data for the main job: one line naming the path and the fix,
before anything is built or written."""
import os

from main_job_run import CONFIG, REPO, run_tool

from mmnextvit.bundled_data.shapes import config_options


def _error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.strip()]


def test_train_without_the_generated_data(tmp_path):
    missing = tmp_path / 'no_shapes'
    work_dir = tmp_path / 'work'
    proc = run_tool([
        'tools/train.py', CONFIG, '--work-dir', work_dir, '--cfg-options',
        *config_options(str(missing))
    ])
    assert proc.returncode == 2, proc.output[-2000:]
    (line, ) = _error_lines(proc)
    assert str(missing) in line and '--cfg-options' in line
    assert not work_dir.exists()


def test_train_without_the_annotation_file(tmp_path):
    from mmnextvit.bundled_data.shapes import ShapesConfig, annotation_file, \
        generate
    root = str(tmp_path / 'shapes')
    generate(root, ShapesConfig(num_train=2, num_val=1), progress=False)
    os.remove(annotation_file(root, 'train'))
    proc = run_tool([
        'tools/train.py', CONFIG, '--work-dir', tmp_path / 'work',
        '--cfg-options', *config_options(root)
    ])
    assert proc.returncode == 2, proc.output[-2000:]
    (line, ) = _error_lines(proc)
    assert annotation_file(root, 'train') in line


def test_demo_refuses_a_data_folder_it_did_not_make(tmp_path):
    foreign = tmp_path / 'photos'
    foreign.mkdir()
    (foreign / 'holiday.jpg').write_bytes(b'')
    proc = run_tool([
        os.path.join(REPO, 'demo', 'main_job.py'), '--data-root', foreign,
        '--work-dir', tmp_path / 'work'
    ])
    assert proc.returncode == 2, proc.output[-2000:]
    (line, ) = _error_lines(proc)
    assert str(foreign) in line and 'another folder' in line
    assert os.listdir(foreign) == ['holiday.jpg']
    assert not (tmp_path / 'work').exists()
