"""Interoperability with other talking-head systems' on-disk formats.

- `nerf_format`: the AD-NeRF / RAD-NeRF / ER-NeRF dataset conventions and exact conversions.
- `nerf_dataset`: reading and checking a dataset in that layout.
- `export_nerf` / `import_nerf`: avatar -> dataset and dataset -> avatar (docs/NERF_FORMAT.md).
- `extras`: the `lokitalk_extra/` sidecar that makes import(export(avatar)) exact.
"""
