"""kflow: the K-Flow engine (transforms, bands, K-amplitude path, loss, samplers).

The core imports neither branch (``kflow_mol``, ``kflow_image``) nor Hydra.
"""
