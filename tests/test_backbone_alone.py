"""The backbone needs mmengine and mmcv's Python code only: it imports and
runs where mmcv has no compiled ops and mmdet / mmseg / mmdeploy are absent,
and the bridges to those apply when they are imported, not before
(mmnextvit/compat/__init__.py)."""
import os.path as osp
import subprocess
import sys
import textwrap

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Makes the named packages unimportable, as on a machine with an mmcv
# built without ops (MMCV_WITH_OPS=0) and no mmdet, mmseg or mmdeploy.
BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top, _, rest = name.partition('.')
        if top in ('mmdet', 'mmseg', 'mmdeploy') or (
                top == 'mmcv' and rest.split('.')[0] in ('ops', '_ext')):
            raise ImportError(f'{name} is blocked by the test')
sys.meta_path.insert(0, Block())
"""


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_blocker_blocks():
    """Control: the blocker does make mmcv's ops and mmdet unimportable."""
    result = python(BLOCK + """
for name in ('mmcv.ops', 'mmdet', 'mmseg.models', 'mmdeploy'):
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(name + ' imported')
import mmcv, mmengine, mmcv.cnn  # what the backbone does need
""")
    assert result.returncode == 0, result.stderr


def test_backbone_imports_and_runs_without_compiled_ops_or_mmdet():
    result = python(BLOCK + """
import torch
from mmnextvit.models import NextViT
from mmnextvit.registry import MODELS
model = MODELS.build(dict(type='NextViT', arch='small')).eval()
assert isinstance(model, NextViT)
with torch.no_grad():
    shapes = [tuple(f.shape) for f in model(torch.rand(1, 3, 64, 64))]
    model.switch_to_deploy()
    model(torch.rand(1, 3, 64, 96))
model.train()
sum(f.mean() for f in model(torch.rand(2, 3, 64, 64))).backward()
loaded = [n for n in ('mmcv.ops', 'mmdet', 'mmseg', 'mmdeploy')
          if n in sys.modules]
print(shapes, loaded)
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        '[(1, 96, 16, 16), (1, 256, 8, 8), (1, 512, 4, 4), (1, 1024, 2, 2)] '
        '[]')


def test_importing_the_package_imports_no_detector_code():
    """``import mmnextvit`` (what ``custom_imports`` does) leaves mmdet's
    models and mmcv's ops unimported in the full environment too."""
    result = python("""
import sys
import mmnextvit
print(sorted(n for n in ('mmcv.ops', 'mmdet.models', 'mmseg.models',
                         'mmdeploy') if n in sys.modules))
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


BRIDGED = """
import sys
{first}
{second}
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.roi_heads.bbox_heads.bbox_head import BBoxHead
from mmcv.ops.nms import NMSop
from mmcv.ops.roi_align import RoIAlignFunction
print(getattr(BaseDenseHead.predict_by_feat,
              '_mmnextvit_fp32_post_processing', False),
      getattr(BBoxHead.predict_by_feat,
              '_mmnextvit_fp32_post_processing', False),
      getattr(NMSop.forward, '_mmnextvit_cpu_autocast_fp32', False),
      getattr(RoIAlignFunction.forward, '_mmnextvit_cpu_autocast_fp32',
              False))
"""


def test_bridges_apply_when_their_modules_are_imported_later():
    result = python(
        BRIDGED.format(first='import mmnextvit', second='import mmdet'))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['True'] * 4


def test_bridges_apply_to_modules_imported_before_the_package():
    result = python(
        BRIDGED.format(
            first='import mmdet.models, mmcv.ops', second='import mmnextvit'))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['True'] * 4


def test_without_the_package_nothing_is_bridged():
    """Control: the marks come from mmnextvit, not from mmdet or mmcv."""
    result = python(BRIDGED.format(first='', second='import mmdet'))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['False'] * 4
