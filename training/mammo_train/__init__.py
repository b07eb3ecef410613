"""Training side of mammo-serve: data readers, near-duplicate families, grouped splits,
EfficientNet training, ONNX export with the model contract, grouped cross-validation reports."""
