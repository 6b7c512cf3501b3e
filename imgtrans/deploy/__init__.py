"""Running trained models outside training: translators, ONNX export, int8 quantisation, BatchNorm folding.

``translators`` (one factory for the command line, the app, eval and Python), ``onnx`` (export,
checked against PyTorch), ``int8`` (static quantisation with calibration) and ``fusion`` (BatchNorm
folded into convolutions for inference).
"""
