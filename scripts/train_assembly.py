"""Train the molecular K-Flow assembly model and score it against the identity baseline.

    python scripts/train_assembly.py                       # = make demo (embedded pyxtal crystals)
    python scripts/train_assembly.py K=1 train.steps=100 output_dir=outputs/k1
    python scripts/train_assembly.py data=cod_organic data.input=../shared/data/cod_organic
    torchrun --nproc_per_node=2 scripts/train_assembly.py device=cuda model=M

Writes into ``output_dir``: config.yaml, train_log.csv, loss_curve.png, checkpoints/last.pt,
metrics.json, eval_per_cluster.csv, pm_bars.png, XYZ trajectories along k and CIFs
(:func:`kflow_mol.experiment.run_training`). With ``train.val_every=N`` it also validates on
``eval.val_clusters`` val clusters every N steps: val_log.csv, val_curve.png,
checkpoints/best.pt (scored on the test split when ``eval.use_best``), and stops early after
``train.early_stop_patience`` validations without a new best. Every option and its default:
:class:`kflow_mol.config.AssemblyConfig` (or ``--help``).
"""

from kflow.training import exit_on_training_error
from kflow_mol.cli import main
from kflow_mol.config import AssemblyConfig
from kflow_mol.experiment import run_training

if __name__ == "__main__":
    main("train_assembly", "train_assembly", AssemblyConfig, run_training, guard=exit_on_training_error)
