"""kflow.training.config.from_dict: the typed-config builder of both branches (nested groups, types, defaults)."""

from dataclasses import dataclass, field

import pytest

from kflow.training import ConfigError, TrainConfig
from kflow.training.config import check_choice, check_run_level_keys, from_dict, run_train_config


@dataclass
class Group:
    name: str = "a"
    width: float = 1.0
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    limit: int | None = None

    def __post_init__(self):
        check_choice("group.name", self.name, ("a", "b"))


@dataclass
class Run:
    output_dir: str = "???"
    resume: bool = False
    group: Group = field(default_factory=lambda: Group(name="b"))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=7))

    def __post_init__(self):
        check_run_level_keys(self.train, TrainConfig(steps=7))


def test_nested_groups_start_from_their_field_defaults_and_values_are_coerced():
    run = from_dict(Run, {"output_dir": 2024, "group": {"width": 3, "sizes": [4]}, "train": {"lr": 1}})
    assert run.output_dir == "2024" and run.group == Group(name="b", width=3.0, sizes=[4])
    assert isinstance(run.group.width, float) and run.train.steps == 7 and run.train.lr == 1.0
    train = run_train_config(run.train, run.output_dir, "cpu", True)
    assert (train.out_dir, train.resume, train.steps) == ("2024", True, 7)
    base = from_dict(Run, {"output_dir": "x", "group": {"limit": 3}})
    assert from_dict(Group, {"width": 2}, "group.", base=base.group) == Group(name="b", width=2.0, limit=3)


@pytest.mark.parametrize(
    "values, message",
    [
        ({}, "output_dir is required"),
        ({"output_dir": "x", "colour": 1}, "unknown key colour"),
        ({"output_dir": "x", "group": {"depth": 1}}, "unknown key group.depth"),
        ({"output_dir": "x", "group": {"width": "wide"}}, "group.width='wide': expected float"),
        ({"output_dir": "x", "group": {"sizes": [1, "two"]}}, "group.sizes[1]='two': expected int"),
        ({"output_dir": "x", "group": {"limit": True}}, "group.limit=True: expected int or NoneType"),
        ({"output_dir": "x", "resume": None}, "resume must not be null"),
        ({"output_dir": "x", "group": 3}, "group must be a group of keys"),
        ({"output_dir": "x", "group": {"name": "c"}}, "unknown group.name 'c'"),
        ({"output_dir": "x", "train": {"lr": -1}}, "train: lr must be > 0"),
        ({"output_dir": "x", "train": {"resume": True}}, "train.resume is set from the top level: use resume=..."),
    ],
)
def test_bad_values_are_one_line_naming_the_dotted_key(values, message):
    with pytest.raises(ConfigError) as info:
        from_dict(Run, values)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
