"""mmdeploy 1.3.1's ``tools/deploy.py`` and ``tools/test.py``, step for step,
for tests (the tools are in mmdeploy's repository, not in its wheel).

    python tests/mmdeploy_tools.py deploy DEPLOY_CFG MODEL_CFG CKPT IMG \\
        --work-dir DIR
    python tests/mmdeploy_tools.py test DEPLOY_CFG MODEL_CFG --model FILE \\
        --work-dir DIR --json OUT

``deploy`` makes the calls of ``tools/deploy.py`` (ONNX and OpenVINO
backends): the ``spawn`` start method, ``torch2onnx`` in a child process
(``PIPELINE_MANAGER.enable_multiprocess``), the conversion in this process
(``to_backend``) and the backend model drawn in a child process
(``visualize_model``, ``output_<backend>.jpg``). ``test`` makes those of
``tools/test.py``: the task processor's dataset, dataloader, backend model
and test runner; the metrics go to ``--json``. Like the tools, this script
imports nothing of mmnextvit itself: the model config's ``custom_imports``
and the deploy config's ``codebase_config.module`` do.
"""
import argparse
import json
import logging
import os.path as osp
import sys
from copy import deepcopy


def deploy(args) -> None:
    import mmengine
    import torch.multiprocessing as mp
    from mmdeploy.apis import torch2onnx, visualize_model
    from mmdeploy.apis.core import PIPELINE_MANAGER
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import get_backend, get_ir_config, load_config

    mp.set_start_method('spawn', force=True)
    PIPELINE_MANAGER.enable_multiprocess(True, [torch2onnx])
    PIPELINE_MANAGER.set_log_level(logging.INFO, [torch2onnx])
    deploy_cfg, model_cfg = load_config(args.deploy_cfg, args.model_cfg)
    mmengine.mkdir_or_exist(osp.abspath(args.work_dir))
    save_file = get_ir_config(deploy_cfg)['save_file']
    torch2onnx(args.img, args.work_dir, save_file, args.deploy_cfg,
               args.model_cfg, args.checkpoint, device='cpu')
    backend = get_backend(deploy_cfg)
    backend_files = to_backend(
        backend, [osp.join(args.work_dir, save_file)],
        work_dir=args.work_dir,
        deploy_cfg=deploy_cfg,
        log_level=logging.INFO,
        device='cpu',
        uri=None)
    process = mp.Process(
        target=visualize_model,
        args=(args.model_cfg, args.deploy_cfg, backend_files, args.img,
              'cpu'),
        kwargs=dict(
            backend=backend,
            output_file=osp.join(args.work_dir,
                                 f'output_{backend.value}.jpg'),
            show_result=False))
    process.start()
    process.join()
    if process.exitcode != 0:
        sys.exit(f'visualize {backend.value} model failed')


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
