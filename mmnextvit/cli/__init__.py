# Copyright (c) mmnextvit contributors. All rights reserved.
"""The command-line harness of the tools in ``tools/``: one-line errors
(``errors``), reading a config (``config``), the checks before any work
starts (``preflight``), the model built once for the Runner
(``runner``), multi-process launching (``launcher``), choosing
the checkpoint to resume from (``resume``) and shared argument parsing
(``args``)."""
from .args import add_cfg_options, autocast_dtype, parse_image_size
from .config import init_task, load_config, set_work_dir, task_of
from .errors import ToolError, fail, first_line, run_tool, stops_in_one_line
from .launcher import (LAUNCHERS, adapt_to_cpu, finish_distributed,
                       setup_launcher, sync_bn_to_bn)
from .preflight import (check_checkpoint, check_data_files, check_data_paths,
                        check_fits, check_pretrained)
from .runner import build_model, build_runner, log_backbone_dtype

__all__ = [
    'add_cfg_options', 'autocast_dtype',
    'ToolError', 'run_tool', 'fail', 'first_line', 'load_config',
    'init_task', 'task_of', 'set_work_dir', 'check_data_paths',
    'check_checkpoint', 'LAUNCHERS', 'setup_launcher', 'sync_bn_to_bn',
    'adapt_to_cpu', 'check_data_files', 'check_fits', 'build_model',
    'build_runner', 'check_pretrained',
    'stops_in_one_line', 'finish_distributed', 'parse_image_size',
    'log_backbone_dtype'
]
