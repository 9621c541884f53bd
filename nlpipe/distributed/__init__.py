"""Engines that spread a batch run over several processes or machines (Ray Data).

Nothing is imported here: Ray's read tasks import `reading` alone, without the pipeline's
dependencies that `ray_engine` brings.
"""
