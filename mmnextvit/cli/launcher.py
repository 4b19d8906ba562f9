# Copyright (c) mmnextvit contributors. All rights reserved.
"""Multi-process launching for the tools, on GPUs and on CPU-only machines.

With GPUs nothing here changes what mmengine does: its ``init_dist`` starts
the process group with the config's backend (NCCL in the stock runtimes).

Without CUDA, mmengine 0.10.7 cannot start a multi-process run by itself:
``init_dist`` calls ``torch.cuda.set_device`` before creating any process
group, and ``Runner.wrap_model`` hands ``device_ids=[LOCAL_RANK]`` to
``DistributedDataParallel``, which then expects the model on that GPU. So on
a CPU-only machine :func:`setup_launcher`

* starts the gloo process group itself from the launcher's environment (the
  Runner skips ``init_dist`` when a group exists),
* configures ``MMDistributedDataParallel`` with ``device_ids=None``, the
  CPU form of DDP, and
* turns synchronised batch norms into plain ones: ``SyncBatchNorm`` only
  runs on accelerators, and each CPU process then normalises its own batch.
"""
import datetime
import os
import subprocess
from typing import Any, Dict, Mapping, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

from .errors import ToolError

__all__ = [
    'LAUNCHERS', 'setup_launcher', 'sync_bn_to_bn', 'adapt_to_cpu',
    'finish_distributed'
]

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')

# Norm types (as registered in mmcv) that synchronise across processes.
SYNC_NORMS = ('SyncBN', 'MMSyncBN')


def _note(message: str) -> None:
    if int(os.environ.get('RANK', '0')) == 0:
        print_log(message, logger='current')


# --------------------------------------------------------------------------
# Process group
# --------------------------------------------------------------------------
def cpu_dist_env(launcher: str,
                 environ: Mapping[str, str]) -> Dict[str, str]:
    """The ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/
    ``MASTER_PORT`` variables that ``init_process_group('gloo')`` reads, from
    the variables each launcher sets.

    Raises:
        ToolError: the launcher's variables are not there, i.e. the tool was
            not started by that launcher.
    """
    def need(names, how):
        missing = [name for name in names if not environ.get(name)]
        if missing:
            raise ToolError(
                f'--launcher {launcher} needs the environment variables '
                f"{', '.join(missing)}; {how}")

    if launcher == 'pytorch':
        need(('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
             'start the tool with tools/dist_train.sh / tools/dist_test.sh '
             '(torchrun), or use --launcher none')
        return dict(LOCAL_RANK=environ.get('LOCAL_RANK', '0'))
    if launcher == 'slurm':
        need(('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
             'start the tool with tools/slurm_train.sh / '
             'tools/slurm_test.sh (srun)')
        addr = environ.get('MASTER_ADDR')
        if not addr:
            try:
                hosts = subprocess.run(
                    ['scontrol', 'show', 'hostnames',
                     environ['SLURM_NODELIST']],
                    capture_output=True, text=True, check=True).stdout
                addr = hosts.split()[0]
            except (OSError, subprocess.CalledProcessError, IndexError):
                raise ToolError(
                    'slurm: cannot resolve the first host of SLURM_NODELIST='
                    f"{environ['SLURM_NODELIST']} with scontrol; set "
                    'MASTER_ADDR to it') from None
        return dict(
            RANK=environ['SLURM_PROCID'],
            WORLD_SIZE=environ['SLURM_NTASKS'],
            LOCAL_RANK=environ.get('SLURM_LOCALID', '0'),
            MASTER_ADDR=addr,
            MASTER_PORT=environ.get('MASTER_PORT', '29500'))
    if launcher == 'mpi':
        need(('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'MASTER_ADDR'),
             'start the tool with mpirun (Open MPI) and set MASTER_ADDR to '
             'the first host')
        return dict(
            RANK=environ['OMPI_COMM_WORLD_RANK'],
            WORLD_SIZE=environ['OMPI_COMM_WORLD_SIZE'],
            LOCAL_RANK=environ.get('OMPI_COMM_WORLD_LOCAL_RANK', '0'),
            MASTER_ADDR=environ['MASTER_ADDR'],
            MASTER_PORT=environ.get('MASTER_PORT', '29500'))
    raise ToolError(f'--launcher {launcher!r} is not one of {LAUNCHERS}')


# How long a gloo collective waits for a process that stopped answering
# (torch's default: 30 minutes). torchrun ends the job as soon as a process
# dies; this bounds the wait when a process hangs instead, or when the
# launcher does not watch the processes. The longest legitimate wait in a
# CPU run is rank 0 saving a checkpoint or computing the COCO metric while
# the others wait; set env_cfg.dist_cfg.timeout (seconds) if yours is longer.
DEFAULT_GLOO_TIMEOUT = 600


def _init_gloo(launcher: str, timeout: Optional[float]) -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        return
    os.environ.update(cpu_dist_env(launcher, os.environ))
    if timeout is None:
        timeout = DEFAULT_GLOO_TIMEOUT
    torch_dist.init_process_group(
        backend='gloo', timeout=datetime.timedelta(seconds=timeout))


def finish_distributed() -> None:
    """End a multi-process run cleanly: wait for every rank, then destroy
    the process group.

    Left to the interpreter's exit, the gloo group's threads are torn down
    in whatever order the process dies in, and a rank can abort with
    "terminate called without an active exception" after its work is done,
    turning a finished run into a failed exit status. Call it once the
    Runner has returned normally; a no-op in single-process runs.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    torch_dist.barrier()
    torch_dist.destroy_process_group()


# --------------------------------------------------------------------------
# Config changes
# --------------------------------------------------------------------------
def sync_bn_to_bn(node: Any) -> int:
    """Replace every synchronised batch-norm type in a (nested) model
    config by ``BN``, in place; returns how many were replaced. Types given
    with a scope (``mmdet.SyncBN``) count too.

    mmengine's ``revert_sync_batchnorm`` does this to a built model (the
    analysis tools use it); this works on the config before the model is
    built, so that the config a run dumps into its work dir says what ran.
    """
    count = 0
    if isinstance(node, dict):
        norm_type = node.get('type')
        if (isinstance(norm_type, str)
                and norm_type.split('.')[-1] in SYNC_NORMS):
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += sync_bn_to_bn(value)
    return count


def _find_unused_parameters(cfg: Config) -> bool:
    # A parameter that gets no gradient in an iteration makes DDP with
    # find_unused_parameters=False fail at the next iteration ("Expected to
    # have finished reduction in the prior iteration"). With these models
    # that happens when the backbone returns fewer than four stages (it
    # stops after the last one in out_indices, so later stages never run),
    # when a config leaves a head branch out of the loss, or for a head
    # whose branch is skipped on a batch without positives. Searching the
    # autograd graph for such parameters costs one traversal per iteration,
    # small next to a Next-ViT forward; a config that knows every parameter
    # is used can set find_unused_parameters=False.
    wrapper = cfg.get('model_wrapper_cfg') or {}
    if 'find_unused_parameters' in wrapper:
        return bool(wrapper['find_unused_parameters'])
    return bool(cfg.get('find_unused_parameters', True))


def setup_launcher(cfg: Config, launcher: str) -> None:
    """Prepare ``cfg`` for ``launcher`` (one of :data:`LAUNCHERS`), and on a
    machine without CUDA start the gloo process group.

    Call it after every check of the inputs and before building the
    ``Runner``.
    """
    if launcher not in LAUNCHERS:
        raise ToolError(f'--launcher {launcher!r} is not one of {LAUNCHERS}')
    cfg.launcher = launcher
    if launcher == 'none':
        return
    find_unused = _find_unused_parameters(cfg)
    if torch.cuda.is_available():
        if cfg.get('model_wrapper_cfg') is None:
            cfg.find_unused_parameters = find_unused
        else:
            cfg.model_wrapper_cfg.setdefault('find_unused_parameters',
                                             find_unused)
        return

    dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg', {})
    _init_gloo(launcher, dist_cfg.get('timeout'))
    cfg.merge_from_dict({'env_cfg.dist_cfg.backend': 'gloo'})

    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper_cls = MODEL_WRAPPERS.get(wrapper['type'])
    if isinstance(wrapper_cls, type) and issubclass(wrapper_cls,
                                                    DistributedDataParallel):
        # DDP's CPU form: no device ids, the module stays where it is.
        wrapper['device_ids'] = None
        wrapper.setdefault('broadcast_buffers', False)
        wrapper['find_unused_parameters'] = find_unused
    cfg.model_wrapper_cfg = wrapper

    converted = sync_bn_to_bn(cfg.model)
    if cfg.get('sync_bn') is not None:
        cfg.sync_bn = None  # would turn BN back into SyncBN after building
        converted += 1
    rank, world = torch_dist.get_rank(), torch_dist.get_world_size()
    message = (f'CPU distributed run: {world} processes, gloo backend, '
               f'rank {rank}')
    if converted:
        message += (f'; {converted} synchronised batch norm setting(s) '
                    f'changed to BN (no CUDA: each process normalises its '
                    f'own batch)')
    _note(message)


def adapt_to_cpu(cfg: Config) -> None:
    """Train a GPU recipe on a machine without CUDA: mmengine's
    ``AmpOptimWrapper`` refuses to build there, so fall back to fp32
    ``OptimWrapper`` with the same optimizer, parameter-wise settings and
    gradient clipping, and say so."""
    if torch.cuda.is_available():
        return
    optim_wrapper = cfg.get('optim_wrapper')
    if not isinstance(optim_wrapper, dict):
        return
    if str(optim_wrapper.get('type', '')).split('.')[-1] != 'AmpOptimWrapper':
        return
    for key in ('loss_scale', 'dtype', 'use_fsdp'):
        optim_wrapper.pop(key, None)
    optim_wrapper.type = 'OptimWrapper'
    _note('No CUDA device: the config trains with AmpOptimWrapper (mixed '
          'precision), which needs one; training in fp32 with OptimWrapper '
          'and the same optimizer settings instead.')
