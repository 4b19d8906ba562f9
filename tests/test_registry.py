"""``type='mmnextvit.NextViT'`` builds from mmdet- and mmseg-scoped configs,
with and without ``custom_imports``, in a fresh interpreter (so nothing
imported by the test session helps)."""
import subprocess
import sys
import textwrap

import pytest

BUILD = textwrap.dedent('''
    import sys
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope
    scope, with_imports = sys.argv[1], sys.argv[2] == '1'
    cfg = dict(default_scope=scope,
               backbone=dict(type='mmnextvit.NextViT', arch='small',
                             out_indices=(1, 3)))
    if with_imports:
        cfg['custom_imports'] = dict(imports=['mmnextvit'],
                                     allow_failed_imports=False)
    cfg = Config(cfg)
    if with_imports:
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    assert 'mmnextvit' not in sys.modules or with_imports
    init_default_scope(cfg.default_scope)
    registry = __import__(scope + '.registry', fromlist=['MODELS']).MODELS
    model = registry.build(cfg.backbone)
    print(type(model).__module__, type(model).__name__, model.out_indices)
''')


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('with_imports', ['0', '1'])
def test_builds_from_downstream_scopes(scope, with_imports):
    result = subprocess.run([sys.executable, '-c', BUILD, scope, with_imports],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-4:] == [
        'mmnextvit.models.backbones.nextvit', 'NextViT', '(1,', '3)'
    ]
