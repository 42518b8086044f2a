"""Training feed-forward style networks and exporting them to ONNX (see export/README.md).

Not needed to *run* a model: that is `nst_engine.models` (onnxruntime only). Exporting needs the
``onnx`` package (``pip install -e '.[train]'``).
"""
