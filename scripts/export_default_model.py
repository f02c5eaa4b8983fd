"""Ship a trained assembly model: copy a checkpoint's weights and run config into the package file.

    python scripts/export_default_model.py checkpoint=outputs/default_model/checkpoints/best.pt
    python scripts/export_default_model.py checkpoint=<best.pt> output=kflow_mol/pretrained/assembly_default.pt

Writes the weights (EMA when the run kept them), the run config and a self-description (system,
K, preset, start, atom limit, steps, source; :func:`kflow_mol.assemble.package_info`), without the
optimizer state, through the atomic checkpoint writer; the file loads with ``weights_only=True``.
The default output is checked against ``EXPECTED_DEFAULT`` (kflow_mol/assemble/model.py) and refused
above 5 MB. A network with other settings: change EXPECTED_DEFAULT in the same commit.
Bad input: one line on stderr, exit 2. The model card (kflow_mol/pretrained/MODEL_CARD.md) is
updated by hand with the run's held-out numbers.
"""

import sys

USAGE = "usage: python scripts/export_default_model.py checkpoint=<train_assembly.py checkpoint> [output=<file>]"


def main(argv: list[str]) -> None:
    if {"-h", "--help"} & set(argv):
        print(USAGE)
        print(__doc__)
        return
    options = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in ("checkpoint", "output"):
            print(f"export_default_model: error: unknown argument {arg!r}; {USAGE}", file=sys.stderr)
            sys.exit(2)
        options[key] = value
    if "checkpoint" not in options:
        print(f"export_default_model: error: checkpoint=... is required; {USAGE}", file=sys.stderr)
        sys.exit(2)
    from kflow.training import ConfigError
    from kflow_mol.assemble import DEFAULT_MODEL, export_model

    try:
        path = export_model(options["checkpoint"], options.get("output") or DEFAULT_MODEL)
    except (ConfigError, OSError) as error:
        print(f"export_default_model: error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(sys.argv[1:])
