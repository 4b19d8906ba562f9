# Copyright (c) mmnextvit contributors. All rights reserved.
"""Shared machinery of the command-line tools in ``tools/``."""
from .config import (ToolError, check_checkpoint, check_data_paths,
                     init_task, load_config, run_tool, set_work_dir, task_of)
from .guards import (check_data_files, check_model, check_pretrained,
                     stops_in_one_line)
from .launcher import (LAUNCHERS, adapt_to_cpu, finish_distributed,
                       setup_launcher, sync_bn_to_bn)

__all__ = [
    'ToolError', 'run_tool', 'load_config', 'init_task', 'task_of',
    'set_work_dir', 'check_data_paths', 'check_checkpoint', 'LAUNCHERS',
    'setup_launcher', 'sync_bn_to_bn', 'adapt_to_cpu', 'check_data_files',
    'check_model', 'check_pretrained', 'stops_in_one_line',
    'finish_distributed'
]
