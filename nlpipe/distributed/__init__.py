"""Engines that spread a batch run over several processes or machines (Ray Data)."""

from .ray_engine import pool_shape, ray_records, require_ray

__all__ = ["pool_shape", "ray_records", "require_ray"]
