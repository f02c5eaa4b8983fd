"""Held-out scores of an assembly model as kflow_mol.assemble uses it (the model card's numbers).

    python scripts/score_assemble_model.py                                  # shipped model, local starts
    python scripts/score_assemble_model.py start=scrambled
    python scripts/score_assemble_model.py model=outputs/run/checkpoints/best.pt start=local output=scores.json

Every cluster of the real test split (``data=real``, built with the start preset) is predicted
from its start: PM-atom / PM-center against the crystal, the share of collision-free clusters
and the mean collision percentage, for the identity, the raw prediction and the prediction after
clash removal (:func:`kflow_mol.assemble.score_split`). Prints and writes JSON. One-line errors, exit 2.
"""

import json
import sys
from pathlib import Path

KEYS = {"model": "default", "start": "local", "split": "test", "data": "real", "output": None, "limit": None}


def main(argv: list[str]) -> None:
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        print("options: " + " ".join(f"{k}={v}" for k, v in KEYS.items()))
        return
    options = dict(KEYS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in KEYS:
            print(f"score_assemble_model: error: unknown argument {arg!r}; keys: {sorted(KEYS)}", file=sys.stderr)
            sys.exit(2)
        options[key] = value
    import torch

    from kflow.training import ConfigError
    from kflow_mol.assemble import score_split

    torch.set_num_threads(1)
    try:
        limit = int(options["limit"]) if options["limit"] else None
        scores = score_split(
            options["model"], options["start"], options["split"], options["data"], limit=limit, progress=True
        )
    except (ConfigError, ValueError) as error:
        print(f"score_assemble_model: error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    for name in ("identity", "raw", "relaxed"):
        print(name, json.dumps(scores[name]))
    if options["output"]:
        Path(options["output"]).parent.mkdir(parents=True, exist_ok=True)
        Path(options["output"]).write_text(json.dumps(scores, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
