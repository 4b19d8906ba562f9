# OpenVINO on the CPU. mmdeploy 1.3.1 converts with Model Optimizer and runs
# with the Inference Engine API, both gone from current OpenVINO; the
# bridge in mmnextvit/compat/mmdeploy.py converts with
# openvino.convert_model and runs with openvino.Core instead. A static
# config fixes the IR's input shape in backend_config.model_inputs. For an
# input of another shape the runner tries to reshape and recompile the IR,
# as mmdeploy's wrapper does, but a Next-ViT graph exported at one size holds
# its sizes as constants, so that raises ValueError (export with a dynamic
# config); without model_inputs the IR keeps the ONNX graph's dynamic axes.
backend_config = dict(type='openvino')
