#!/usr/bin/env python
# Copyright (c) mmnextvit contributors. All rights reserved.
import os.path as osp
import re
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# Shipped inside the package as mmnextvit/.mim/, where `mmnextvit::` config
# paths, mim and downstream projects look for them.
MIM_FILES = ('configs', 'tools', 'model-index.yml')

HERE = osp.dirname(osp.abspath(__file__))


def get_version():
    """Read ``__version__`` from mmnextvit/version.py without importing it."""
    version_file = osp.join(HERE, 'mmnextvit', 'version.py')
    namespace = {}
    with open(version_file, encoding='utf-8') as f:
        exec(compile(f.read(), version_file, 'exec'), namespace)
    return namespace['__version__']


def parse_requirements(fname):
    """Parse a pip requirements file into a list of requirement strings.

    Comments, blank lines and pip options are dropped; ``-r other.txt``
    includes are followed relative to the including file.
    """
    path = osp.join(HERE, fname)
    reqs = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = re.split(r'\s+#|^#', line.strip(), maxsplit=1)[0].strip()
            if not line:
                continue
            if line.startswith(('-r ', '--requirement ')):
                sub = line.split(maxsplit=1)[1]
                reqs.extend(
                    parse_requirements(
                        osp.relpath(
                            osp.join(osp.dirname(path), sub), HERE)))
                continue
            if line.startswith('-'):
                continue
            reqs.append(line)
    return reqs


class BuildWithMimFiles(build_py):
    """Copy the configs, tools and model index into the built package.

    An editable install reads them from the checkout instead (see
    mmnextvit/config_resolver.py), so nothing is copied into the source
    tree."""

    def run(self):
        super().run()
        target = osp.join(self.build_lib, 'mmnextvit', '.mim')
        for name in MIM_FILES:
            source = osp.join(HERE, name)
            if not osp.exists(source):
                continue
            dest = osp.join(target, name)
            if osp.isdir(source):
                shutil.copytree(
                    source,
                    dest,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                self.mkpath(target)
                shutil.copyfile(source, dest)


def readme():
    path = osp.join(HERE, 'README.md')
    if not osp.exists(path):
        return ''
    with open(path, encoding='utf-8') as f:
        return f.read()


if __name__ == '__main__':
    setup(
        name='mmnextvit',
        version=get_version(),
        description='Next-ViT backbone for OpenMMLab 2.0 '
        '(mmengine / mmcv / mmdet / mmseg)',
        long_description=readme(),
        long_description_content_type='text/markdown',
        keywords='computer vision, backbone, Next-ViT, detection, '
        'segmentation, OpenMMLab',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'demo')),
        include_package_data=True,
        python_requires='>=3.8',
        classifiers=[
            'Development Status :: 4 - Beta',
            'Operating System :: OS Independent',
            'Programming Language :: Python :: 3',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
        ],
        license='Apache License 2.0',
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require={
            'tests': parse_requirements('requirements/tests.txt'),
            'optional': parse_requirements('requirements/optional.txt'),
            # mmdeploy itself goes in with --no-deps (requirements/deploy.txt
            # says why); these are what it needs at run time.
            'deploy': parse_requirements('requirements/deploy.txt'),
            'all': parse_requirements('requirements/runtime.txt') +
            parse_requirements('requirements/tests.txt') +
            parse_requirements('requirements/optional.txt'),
        },
        cmdclass={'build_py': BuildWithMimFiles},
        zip_safe=False)
