"""Score a saved assembly model on the test split of any dataset.

    python scripts/evaluate_assembly.py checkpoint=outputs/assembly_demo/checkpoints/last.pt
    python scripts/evaluate_assembly.py checkpoint=outputs/run/checkpoints/best.pt   # best validation
    python scripts/evaluate_assembly.py checkpoint=... use_run_data=false data=prepared data.folder=PATH
    python scripts/evaluate_assembly.py checkpoint=... use_run_data=false data=pyxtal data.start=scrambled

Prints PM-atom / PM-center / RMSD_17 / collision / separation for the model and the identity
baseline and writes them as JSON (:func:`kflow_mol.experiment.run_evaluation`; options:
:class:`kflow_mol.config.EvaluateConfig`, or ``--help``).
"""

from kflow_mol.cli import main
from kflow_mol.config import EvaluateConfig
from kflow_mol.experiment import run_evaluation

if __name__ == "__main__":
    main("evaluate_assembly", "evaluate_assembly", EvaluateConfig, run_evaluation)
