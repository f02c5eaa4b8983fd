"""The scripts' command-line edge, shared by both branches: Hydra composition into a typed config.

It sits between the core and the branches (``kflow`` <- ``kflow_edge`` <- ``kflow_mol`` /
``kflow_image``): it may use the core and Hydra, never a branch, and the core never imports it,
so the engine stays free of Hydra.
"""
