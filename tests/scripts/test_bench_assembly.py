"""scripts/bench_assembly.py: its options and its Markdown table (the timing itself is kflow.benchmarking's)."""

from _scripts import load_script


def test_options_and_table():
    bench = load_script("bench_assembly")
    args = bench.parse_args(["--presets", "S", "--sample-steps", "2"])
    assert args.presets == ["S"] and args.sample_steps == [2] and args.batch_size == 8 and not args.reference
    rows = [
        {"device": "cpu", "preset": "S", "variant": "current", "parameters": 49848, "train_clusters_per_s": 68.754}
        | {"sample_s_per_cluster@2": 0.0104, "speed_up_vs_reference": 2.0},
        {"device": "cpu", "preset": "S", "variant": "reference", "parameters": 9, "train_clusters_per_s": 34.4}
        | {"sample_s_per_cluster@2": 0.02},
    ]
    lines = bench.table(rows, [2]).splitlines()
    assert lines[0] == (
        "| device | preset | variant | parameters | train clusters/s | x reference | sample s/cluster @2 steps |"
    )
    assert lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2] == "| cpu | S | current | 49,848 | 68.75 | 2.0 | 0.010 |"
    assert lines[3] == "| cpu | S | reference | 9 | 34.40 | nan | 0.020 |"
