"""Score a saved assembly model on the test split of any dataset.

    python scripts/evaluate_assembly.py checkpoint=outputs/assembly_demo/checkpoints/last.pt   # the run's data
    python scripts/evaluate_assembly.py checkpoint=outputs/run/checkpoints/best.pt   # best validation
    python scripts/evaluate_assembly.py checkpoint=... data=prepared data.folder=PATH
    python scripts/evaluate_assembly.py checkpoint=... data=pyxtal data.start=scrambled

Without ``data=...`` the run's own data (saved in the checkpoint) is scored; ``data=<group>``
scores that data instead (``data.<key>=...`` alone is refused: it would change nothing).
Prints PM-atom / PM-center / RMSD_17 / collision / separation for the model and the identity
baseline and writes them as JSON (:func:`kflow_mol.experiment.run_evaluation`; options:
:class:`kflow_mol.config.EvaluateConfig`, or ``--help``).
"""

from kflow_mol.cli import evaluate_overrides, main
from kflow_mol.config import EvaluateConfig
from kflow_mol.experiment import run_evaluation

if __name__ == "__main__":
    main("evaluate_assembly", "evaluate_assembly", EvaluateConfig, run_evaluation, edit_overrides=evaluate_overrides)
