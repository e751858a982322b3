"""mnist-lit: handwritten digit recognition with PyTorch Lightning, Hydra and TensorBoard."""
