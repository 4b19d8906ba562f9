"""mmdeploy 1.3.1's ``tools/deploy.py`` and ``tools/test.py``, step for step,
for tests (the tools are in mmdeploy's repository, not in its wheel, and
the machines that test this package do not reach the repository).

    python tests/mmdeploy_tools.py deploy DEPLOY_CFG MODEL_CFG CKPT IMG \\
        --work-dir DIR [--dump-info]
    python tests/mmdeploy_tools.py test DEPLOY_CFG MODEL_CFG --model FILE \\
        --work-dir DIR --json OUT

``deploy`` makes the calls of ``tools/deploy.py`` at tag v1.3.1 for the
ONNX Runtime and OpenVINO backends, in its order: the ``spawn`` start
method; the export functions run in child processes
(``PIPELINE_MANAGER.enable_multiprocess`` for ``torch2onnx``,
``torch2torchscript``, ``extract_model`` and ``create_calib_input_data``);
with ``--dump-info`` the SDK files (``export2SDK``); ``torch2onnx``; the
conversion in this process (``to_backend``); then two child processes
started as its ``create_process`` starts them (mmdeploy's
``target_wrapper`` reporting through a shared ``ret_value``, the tool
exiting with status 1 when one fails): ``visualize <backend> model``
(``output_<backend>.jpg``) and ``visualize pytorch model``
(``output_pytorch.jpg``). The steps the tool takes only for other backends
(partitioning, TensorRT calibration, RKNN, Ascend, VACC, ncnn) are left
out. ``test`` makes the calls of ``tools/test.py``: the task processor's
dataset and dataloader (batch size 1), backend model and test runner, then
the model's ``destroy``; the metrics go to ``--json``. Like the tools, this
script imports nothing of mmnextvit itself: the model config's
``custom_imports`` and the deploy config's ``codebase_config.module`` do.
"""
import argparse
import json
import logging
import os.path as osp
import sys
from copy import deepcopy


def create_process(name, target, args, kwargs, ret_value) -> None:
    """``target`` in a child process, as tools/deploy.py's function of this
    name runs it: through mmdeploy's ``target_wrapper``, which stores the
    outcome in ``ret_value``; a failure ends the tool with status 1."""
    from functools import partial

    from mmdeploy.utils import get_root_logger, target_wrapper
    from torch.multiprocessing import Process
    logger = get_root_logger()
    logger.info(f'{name} start.')
    process = Process(
        target=partial(target_wrapper, target, logger.level, ret_value),
        args=args,
        kwargs=kwargs)
    process.start()
    process.join()
    if ret_value.value != 0:
        logger.error(f'{name} failed.')
        sys.exit(1)
    logger.info(f'{name} success.')


def deploy(args) -> None:
    import mmengine
    import torch.multiprocessing as mp
    from mmdeploy.apis import (create_calib_input_data, extract_model,
                               torch2onnx, torch2torchscript, visualize_model)
    from mmdeploy.apis.core import PIPELINE_MANAGER
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.backend.sdk.export_info import export2SDK
    from mmdeploy.utils import (Backend, get_backend, get_ir_config,
                                load_config)

    mp.set_start_method('spawn', force=True)
    pipeline_funcs = [
        torch2onnx, torch2torchscript, extract_model, create_calib_input_data
    ]
    PIPELINE_MANAGER.enable_multiprocess(True, pipeline_funcs)
    PIPELINE_MANAGER.set_log_level(logging.INFO, pipeline_funcs)
    deploy_cfg, model_cfg = load_config(args.deploy_cfg, args.model_cfg)
    mmengine.mkdir_or_exist(osp.abspath(args.work_dir))
    if args.dump_info:
        export2SDK(deploy_cfg, model_cfg, args.work_dir, pth=args.checkpoint,
                   device='cpu')
    ret_value = mp.Value('d', 0, lock=False)
    save_file = get_ir_config(deploy_cfg)['save_file']
    torch2onnx(args.img, args.work_dir, save_file, args.deploy_cfg,
               args.model_cfg, args.checkpoint, device='cpu')
    backend = get_backend(deploy_cfg)
    PIPELINE_MANAGER.set_log_level(logging.INFO, [to_backend])
    backend_files = to_backend(
        backend, [osp.join(args.work_dir, save_file)],
        work_dir=args.work_dir,
        deploy_cfg=deploy_cfg,
        log_level=logging.INFO,
        device='cpu',
        uri='192.168.1.1:60000')
    create_process(
        f'visualize {backend.value} model',
        target=visualize_model,
        args=(args.model_cfg, args.deploy_cfg, backend_files, args.img,
              'cpu'),
        kwargs=dict(
            backend=backend,
            output_file=osp.join(args.work_dir,
                                 f'output_{backend.value}.jpg'),
            show_result=False),
        ret_value=ret_value)
    create_process(
        'visualize pytorch model',
        target=visualize_model,
        args=(args.model_cfg, args.deploy_cfg, [args.checkpoint], args.img,
              'cpu'),
        kwargs=dict(
            backend=Backend.PYTORCH,
            output_file=osp.join(args.work_dir, 'output_pytorch.jpg'),
            show_result=False),
        ret_value=ret_value)


def test(args) -> None:
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils.config_utils import load_config

    deploy_cfg, model_cfg = load_config(args.deploy_cfg, args.model_cfg)
    processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    loader = deepcopy(model_cfg['test_dataloader'])
    loader['batch_size'] = 1
    loader['dataset'] = processor.build_dataset(loader['dataset'])
    dataloader = processor.build_dataloader(loader)
    model = processor.build_backend_model(
        [args.model],
        data_preprocessor_updater=processor.update_data_preprocessor)
    runner = processor.build_test_runner(
        model,
        args.work_dir,
        log_file=None,
        show=False,
        show_dir=None,
        wait_time=0,
        interval=1,
        dataloader=dataloader)
    metrics = runner.test()
    model.destroy()
    with open(args.json, 'w') as out:
        json.dump({k: float(v) for k, v in metrics.items()}, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest='tool', required=True)
    one = sub.add_parser('deploy')
    one.add_argument('deploy_cfg')
    one.add_argument('model_cfg')
    one.add_argument('checkpoint')
    one.add_argument('img')
    one.add_argument('--work-dir', required=True)
    one.add_argument('--dump-info', action='store_true')
    two = sub.add_parser('test')
    two.add_argument('deploy_cfg')
    two.add_argument('model_cfg')
    two.add_argument('--model', required=True)
    two.add_argument('--work-dir', required=True)
    two.add_argument('--json', required=True)
    args = parser.parse_args()
    (deploy if args.tool == 'deploy' else test)(args)


if __name__ == '__main__':
    main()
