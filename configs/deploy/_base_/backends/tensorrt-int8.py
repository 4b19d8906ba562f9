# TensorRT in int8 (with fp16 for the layers TensorRT keeps in float),
# calibrated by TensorRT's entropy calibrator on the images mmdeploy's
# tools/deploy.py writes into calib_file. mmdeploy reads them from the model
# config's val set unless --calib-dataset-cfg names another dataset: pass a
# config whose val_dataloader is the training set (docs/deploy.md), so that
# the test images are never calibrated on.
backend_config = dict(
    type='tensorrt',
    common_config=dict(
        fp16_mode=True,
        int8_mode=True,
        # 1 GiB of scratch memory for TensorRT's kernel search.
        max_workspace_size=1 << 30))
calib_config = dict(create_calib=True, calib_file='calib_data.h5')
