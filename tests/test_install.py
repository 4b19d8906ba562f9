"""The installation routes of docs/install.md are what the tested
environments are made with, and the version floors and pins say what the
two tested stacks are.

``make env-oldest`` builds the oldest stack by running GPU route 1's
commands (``route`` lines of tools/setup_env.sh); these tests keep the page
and the script from drifting apart, so the route CI runs is the route the
page gives.
"""
import os.path as osp
import re
import shlex
import sys

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGE = osp.join(REPO, 'docs', 'install.md')
SETUP = osp.join(REPO, 'tools', 'setup_env.sh')


def _read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def _section(text, heading):
    start = text.index(heading)
    end = text.find('\n## ', start + len(heading))
    return text[start:end if end >= 0 else len(text)]


def _bash_blocks(text):
    return re.findall(r'```bash\n(.*?)```', text, re.S)


def _commands(block):
    """The commands of a code block, comments and line continuations
    removed."""
    joined = block.replace('\\\n', ' ')
    lines = []
    for line in joined.splitlines():
        line = re.split(r'\s+#', line)[0].strip()
        if line and not line.startswith('#'):
            lines.append(' '.join(shlex.split(line)))
    return lines


def route_one_commands():
    section = _section(_read(PAGE), '## GPU, route 1')
    (block, ) = _bash_blocks(section)
    return _commands(block)


def setup_route_commands():
    """The ``route`` lines of the oldest stack's set-up, as commands."""
    found = []
    for line in _read(SETUP).splitlines():
        line = line.strip()
        if line.startswith('route pip ') or line.startswith('route mim '):
            found.append(' '.join(shlex.split(line[len('route '):])))
    return found


def test_route_one_is_what_make_env_oldest_runs():
    page = route_one_commands()
    assert page[0].startswith('python3.11 -m venv venv')
    assert page[1] == 'export PIP_CONSTRAINT=$PWD/requirements/oldest.txt'
    assert page[2:] == setup_route_commands()
    script = _read(SETUP)
    assert ('export PIP_CONSTRAINT="$ROOT/requirements/oldest.txt"'
            in script)


def test_route_one_check_fails_on_a_changed_page(monkeypatch, tmp_path):
    """Control: a page whose route differs from the script's is caught."""
    page = tmp_path / 'install.md'
    page.write_text(_read(PAGE).replace('mim install mmcv==2.1.0',
                                        'mim install mmcv==2.2.0'))
    monkeypatch.setattr(sys.modules[__name__], 'PAGE', str(page))
    with pytest.raises(AssertionError):
        test_route_one_is_what_make_env_oldest_runs()


def _pins(path):
    pins = {}
    for line in _read(path).splitlines():
        line = line.split('#')[0].strip()
        if line and not line.startswith('-'):
            requirement = Requirement(line)
            pins[requirement.name.lower()] = requirement.specifier
    return pins


TESTED = ('torch', 'numpy', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation')


def test_floors_are_the_oldest_tested_stack():
    """Each range of requirements/runtime.txt starts at the oldest stack's
    pin (requirements/oldest.txt) and admits today's stack."""
    oldest = _pins(osp.join(REPO, 'requirements', 'oldest.txt'))
    runtime = _pins(osp.join(REPO, 'requirements', 'runtime.txt'))
    newest = {'torch': '2.13.0', 'numpy': '2.4.6'}
    for name in TESTED:
        (pin, ) = oldest[name]
        assert pin.operator == '==', name
        floor = [s for s in runtime[name] if s.operator in ('>=', '==')]
        assert floor and Version(floor[0].version) == Version(pin.version), (
            name, runtime[name], pin)
        assert Version(pin.version) in runtime[name]
        if name in newest:
            assert Version(newest[name]) in runtime[name], name
    (mmdeploy, ) = oldest['mmdeploy']
    assert mmdeploy.version == '1.3.1'
    setup = _read(osp.join(REPO, 'setup.py'))
    assert "parse_requirements('requirements/runtime.txt')" in setup


def test_this_environment_is_one_of_the_tested_stacks():
    """The suite runs on one of the two stacks docs/install.md names."""
    import mmcv
    import mmdet
    import mmengine
    import mmseg
    import numpy
    import torch
    stack = (torch.__version__.split('+')[0], numpy.__version__.split('.')[0])
    assert stack in {('2.1.0', '1'), ('2.13.0', '2')}, stack
    assert (mmengine.__version__, mmcv.__version__, mmdet.__version__,
            mmseg.__version__) == ('0.10.7', '2.1.0', '3.3.0', '1.2.2')
