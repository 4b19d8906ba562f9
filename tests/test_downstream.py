"""A project outside this repository inherits our configs by package name:
``_base_ = 'mmnextvit::<folder>/<config>.py'``."""
import glob
import os
import os.path as osp
import subprocess
import sys
import sysconfig
import textwrap

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRIMITIVES = sorted(
    osp.relpath(p, osp.join(ROOT, 'configs'))
    for p in glob.glob(osp.join(ROOT, 'configs', '*', 'nextvit_s_*.py'))
    if 'cpu' not in osp.basename(p))

# Run in a fresh interpreter from another folder, so only the installed
# package (not this checkout's working directory) provides the configs.
LOAD_AND_BUILD = textwrap.dedent('''
    import sys
    import mmnextvit  # noqa: F401  (teaches Config the mmnextvit:: prefix)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(sys.argv[1])
    init_default_scope(cfg.default_scope)
    registry = __import__(cfg.default_scope + '.registry',
                          fromlist=['MODELS']).MODELS
    model = registry.build(cfg.model)
    head = getattr(model, 'decode_head', None) or model.roi_head.bbox_head
    print(cfg.default_scope, cfg.model.get('_scope_'), type(model).__name__,
          type(model.backbone).__name__, head.num_classes)
''')


def downstream_config(tmp_path, base):
    folder = base.split('/')[0]
    if folder == 'mask_rcnn':
        override = ('model = dict(roi_head=dict(bbox_head=dict(num_classes=3),'
                    ' mask_head=dict(num_classes=3)))')
    else:
        override = 'model = dict(decode_head=dict(num_classes=3))'
    path = tmp_path / 'project' / 'my_config.py'
    path.parent.mkdir()
    path.write_text(f"_base_ = 'mmnextvit::{base}'\n"
                    f'{override}\n'
                    "model['backbone'] = dict(init_cfg=None)\n")
    return str(path)


def test_there_are_configs_to_inherit():
    assert 'mask_rcnn/nextvit_s_1x.py' in PRIMITIVES


@pytest.mark.parametrize('base', PRIMITIVES)
def test_inherit_by_package_name(tmp_path, base):
    config = downstream_config(tmp_path, base)
    result = subprocess.run([sys.executable, '-c', LOAD_AND_BUILD, config],
                            capture_output=True, text=True,
                            cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    scope, model_scope, model, backbone, classes = result.stdout.split()[-5:]
    assert backbone == 'NextViT' and classes == '3'
    # The inherited dicts keep the downstream framework's scope, not ours.
    assert scope == model_scope == ('mmdet' if base.startswith('mask_rcnn')
                                    else 'mmseg')


def test_unknown_config_name_is_named(tmp_path):
    path = tmp_path / 'bad.py'
    path.write_text("_base_ = 'mmnextvit::mask_rcnn/nextvit_xl_1x.py'\n")
    code = ('import sys, mmnextvit\n'
            'from mmengine.config import Config\n'
            'Config.fromfile(sys.argv[1])\n')
    result = subprocess.run([sys.executable, '-c', code, str(path)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "no config 'mask_rcnn/nextvit_xl_1x.py'" in result.stderr


def test_wheel_installs_into_a_fresh_environment(tmp_path):
    """``pip install .`` into a new virtual environment ships the configs
    (mmnextvit/.mim) and the downstream inheritance works from another
    folder with nothing from this checkout on the path."""
    dist = tmp_path / 'dist'
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                    '--no-build-isolation', '-q', '-w', str(dist), ROOT],
                   check=True, capture_output=True)
    (wheel, ) = dist.glob('mmnextvit-*.whl')
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    python = str(venv / 'bin' / 'python')
    # The dependencies (torch, the compiled mmcv, mmdet, ...) are this
    # environment's, seen through a path entry rather than installed again
    # (a minute of unpacking torch): a plain path entry does not run this
    # environment's .pth files, so its editable mmnextvit stays invisible
    # and pip still checks that the wheel's requirements are met.
    site = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_paths()'
         '["purelib"])'], capture_output=True, text=True,
        check=True).stdout.strip()
    with open(osp.join(site, 'dependencies.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    assert subprocess.run([python, '-c', 'import mmnextvit'],
                          capture_output=True, cwd=str(tmp_path)).returncode
    result = subprocess.run(
        [python, '-m', 'pip', 'install', '-q', '--disable-pip-version-check',
         str(wheel)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    config = downstream_config(tmp_path, 'mask_rcnn/nextvit_s_1x.py')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    result = subprocess.run([python, '-c', LOAD_AND_BUILD, config],
                            capture_output=True, text=True,
                            cwd=str(elsewhere),
                            env={'PATH': os.environ['PATH']})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-3:] == ['MaskRCNN', 'NextViT', '3']
    location = subprocess.run(
        [python, '-c', 'import mmnextvit, os; print(os.path.dirname('
         'mmnextvit.__file__))'], capture_output=True, text=True,
        cwd=str(elsewhere)).stdout.strip()
    assert location.startswith(str(venv))
    assert osp.isfile(osp.join(location, '.mim', 'configs', 'mask_rcnn',
                               'nextvit_s_1x.py'))
