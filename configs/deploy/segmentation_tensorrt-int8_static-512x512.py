# Semantic FPN / UperNet in TensorRT, int8 calibrated by TensorRT (with
# fp16 for the layers it keeps in float), at 512x512 only. mmdeploy's
# tools/deploy.py writes the calibration images into calib_file and
# TensorRT's entropy calibrator reads them while it builds the engine.
# mmdeploy takes them from the model config's val set unless
# --calib-dataset-cfg names another config: pass one whose val_dataloader is
# the training set (docs/deploy.md), so that the test images are never
# calibrated on.
_base_ = ['./segmentation_tensorrt-fp16_static-512x512.py']

backend_config = dict(common_config=dict(int8_mode=True))
calib_config = dict(create_calib=True, calib_file='calib_data.h5')
