"""The ``sop`` command: one entry point for the demo, the robot graph and the learner."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import platform
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import yaml

from sop_ros.checkpoint_cmd import add_checkpoint_parser
from sop_ros.core.config import parse_assignments
from sop_ros.core.errors import SopError
from sop_ros.demo.options import DemoOptions

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


class _Names:
    """The names a registry holds, read when argparse first checks or lists them (its ``choices``).

    The registries import torch: ``sop --help`` and the other commands must not wait for it.
    """

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load
        self._names: tuple[str, ...] | None = None

    def _all(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = tuple(self._load())
        return self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __contains__(self, name: object) -> bool:
        return name in self._all()


def _algorithm_names() -> list[str]:
    from sop_ros.learner.algorithms import ALGORITHMS

    return sorted(ALGORITHMS)


def _add_algorithm_argument(parser: argparse.ArgumentParser, default: object, default_text: str) -> None:
    """``--algorithm NAME``, checked against the learner's registry once given."""
    parser.add_argument(
        "--algorithm",
        choices=_Names(_algorithm_names),
        # A metavar of its own: argparse would otherwise list the choices while building the parser.
        metavar="NAME",
        default=default,
        help=f"post-training algorithm: %(choices)s (default {default_text})",
    )


def _condition_names() -> tuple[str, ...]:
    from sop_ros.sim.tasks import CONDITIONS

    return CONDITIONS


def _cmd_demo(args: argparse.Namespace) -> int:
    from sop_ros.demo.run import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Ctrl-C or SIGTERM stops the robots and writes the report, even when started in the background.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    options = DemoOptions(
        robots=args.robots,
        algorithm=args.algorithm,
        minutes=args.minutes,
        out=Path(args.out),
        demos_per_task=args.demos_per_task,
        base_steps=args.base_steps,
        seed=args.seed,
        conditions=args.conditions,
    )
    run_demo(options)
    return 0


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _cmd_experiment(args: argparse.Namespace) -> int:
    from sop_ros.experiment.run import ExperimentOptions, run_experiment

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("sop_ros.learner", "sop_ros.storage"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    arms = tuple(a for a in args.arms.split(",") if a) if args.arms else ExperimentOptions().arms
    budget_min, arm_budget_min = _parse_budgets(args.budget_min)
    options = ExperimentOptions(
        size=args.size,
        arms=arms,
        out=Path(args.out),
        jobs=args.jobs,
        seeds=_parse_seeds(args.seed),
        base=Path(args.base) if args.base else None,
        budget_min=budget_min,
        arm_budget_min=arm_budget_min,
        device=args.device,
        report_only=args.report_only,
        resume=args.resume,
        overrides=parse_assignments(args.set),
    )
    run_experiment(options)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    print(f"sop_ros {_version('sop_ros')} on Python {platform.python_version()} ({platform.machine()})")
    for dist in ("ros-kilted-rclpy", "ros-sop-msgs", "torch", "transformers", "eclipse-zenoh", "rosbags"):
        print(f"  {dist:<20} {_version(dist)}")
    for var in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "RMW_IMPLEMENTATION"):
        print(f"  {var:<30} {os.environ.get(var, '(unset)')}")
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from sop_ros.nodes.params_file import params_markdown, params_yaml
    from sop_ros.nodes.registry import NODES

    nodes = args.nodes or sorted(NODES)
    if args.markdown:
        print(params_markdown(nodes), end="")
    else:
        print("\n".join(params_yaml(node) for node in nodes), end="")
    return 0


def _parse_seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SopError(f"--seed {text!r}: expected integers separated by commas, e.g. 0,1,2") from None


def _parse_budgets(items: Sequence[str]) -> tuple[float | None, dict[str, float]]:
    """``--budget-min`` values: a plain number for every arm, ``ARM=MINUTES`` for one."""
    budget: float | None = None
    per_arm: dict[str, float] = {}
    for item in items:
        arm, _, minutes = item.rpartition("=")
        try:
            value = float(minutes)
        except ValueError:
            raise SopError(
                f"--budget-min {item!r}: expected MINUTES or ARM=MINUTES, e.g. hg_dagger_1=120"
            ) from None
        if arm:
            per_arm[arm] = value
        else:
            budget = value
    return budget, per_arm


def _cmd_learner(args: argparse.Namespace) -> int:
    import threading

    from sop_ros.core.config import config_from_flat, flatten_mapping
    from sop_ros.learner.distributed import init_distributed
    from sop_ros.learner.service import CloudConfig, CloudLearner
    from sop_ros.nodes.share import share_path

    values = flatten_mapping(yaml.safe_load(Path(args.config).read_text()) or {}) if args.config else {}
    values.update(parse_assignments(args.set))
    config = config_from_flat(CloudConfig, values)
    zenoh_config = (
        Path(config.zenoh_config) if config.zenoh_config else share_path("config/zenoh/router.json5")
    )
    # Under torchrun every rank trains and rank 0 alone serves the fleet; joining first picks the GPU.
    cloud = CloudLearner(config, zenoh_config=zenoh_config, dist=init_distributed())
    stop = threading.Event()
    try:
        cloud.run(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        cloud.close()
    return 0


def _cmd_train_offline(args: argparse.Namespace) -> int:
    from sop_ros.core.config import config_from_flat, flatten_mapping
    from sop_ros.core.policy import PolicyConfig
    from sop_ros.learner.offline import train_offline

    if args.sim:
        from sop_ros.sim.policy import sim_policy_config

        base = flatten_mapping(vars(sim_policy_config()))
    else:
        base = {}
    values = flatten_mapping(yaml.safe_load(Path(args.config).read_text()) or {}) if args.config else {}
    config = config_from_flat(PolicyConfig, {**base, **values, **parse_assignments(args.set)})
    out = train_offline(
        Path(args.bags),
        config,
        Path(args.out),
        steps=args.steps,
        **{name: getattr(args, name) for name in ("batch_size", "algorithm") if hasattr(args, name)},
        initial_weights=Path(args.initial_weights) if args.initial_weights else None,
    )
    print(f"trainable weights written to {out}")
    return 0


def _cmd_robot(args: argparse.Namespace) -> int:
    from sop_ros.nodes.params_file import check_node_settings, check_params_file
    from sop_ros.nodes.registry import LINK_NODES
    from sop_ros.nodes.robot_graph import RobotGraphConfig, run_robot

    parameters: dict[str, dict[str, object]] = {}
    for item in args.set:
        node, _, rest = item.partition(":")
        name, _, value = rest.partition("=")
        if not (node and name and value):
            raise SystemExit(f"--set {item!r}: expected NODE:PARAMETER=VALUE")
        parameters.setdefault(node, {})[name] = yaml.safe_load(value)
    # A misspelt name or node is an error, as in `sop learner`, not silently dropped.
    for node, values in parameters.items():
        check_node_settings(node, values)
    if args.params_file:
        check_params_file(Path(args.params_file))
    extra: tuple[str, ...] = ()
    if args.learner:
        zenoh = {"zenoh.connect": args.learner}
        if args.zenoh_config:
            zenoh["zenoh.config_file"] = args.zenoh_config
        parameters.setdefault("bridge", {}).update({**zenoh, "upload.robot_id": args.robot_id})
        parameters.setdefault("param_update", {}).update(zenoh)
        extra = LINK_NODES
    config = RobotGraphConfig(
        robot_id=args.robot_id, sim=args.sim, parameters=parameters, params_file=args.params_file or ""
    )
    return run_robot(config, extra_nodes=extra)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sop",
        description="Scalable online post-training of a VLA policy on a ROS 2 robot fleet.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # Defaults come from DemoOptions alone; choices from the algorithm and task registries.
    defaults = DemoOptions()
    demo = sub.add_parser("demo", help="run a learner and simulated robots on this machine")
    demo.add_argument(
        "--robots", type=int, default=defaults.robots, help="number of simulated robots (default %(default)s)"
    )
    _add_algorithm_argument(demo, defaults.algorithm, "%(default)s")
    demo.add_argument(
        "--minutes", type=float, default=defaults.minutes, help="wall-clock budget (min, default %(default)s)"
    )
    demo.add_argument(
        "--out", default=str(defaults.out), help="where bags, logs, weights and plots go (%(default)s)"
    )
    demo.add_argument(
        "--seed",
        type=_non_negative_int,
        default=defaults.seed,
        help="seed of the robots' and held-out layouts and of the learner (default %(default)s)",
    )
    demo.add_argument(
        "--conditions",
        choices=_Names(_condition_names),
        metavar="NAME",
        default=defaults.conditions,
        help="layouts the fleet works on (%(choices)s): deployment conditions the demonstrations "
        "do not cover or the demonstrations' own (default %(default)s)",
    )
    demo.add_argument(
        "--demos-per-task",
        type=int,
        default=defaults.demos_per_task,
        help="expert demonstrations per task (cached; default %(default)s)",
    )
    demo.add_argument(
        "--base-steps",
        type=int,
        default=defaults.base_steps,
        help=f"offline training steps of the base policy (with {defaults.demos_per_task} demonstrations "
        f"per task and {defaults.base_steps} steps the packaged base is used; anything else trains here)",
    )
    demo.set_defaults(handler=_cmd_demo)

    experiment = sub.add_parser(
        "experiment", help="the SOP study in simulation: algorithms, fleet sizes, data mixing"
    )
    experiment.add_argument(
        "--size", choices=("full", "reduced"), default="full", help="full (GPU) or reduced (CPU check)"
    )
    experiment.add_argument("--arms", help="comma-separated arms to run (default: all)")
    experiment.add_argument("--out", default="out/experiment", help="results, bags and plots go here")
    experiment.add_argument("--jobs", type=int, default=1, help="arms run at once, one process each")
    experiment.add_argument(
        "--seed",
        default="0",
        help="seed of layouts and sampling; several, comma-separated (0,1,2), run every arm once per seed",
    )
    experiment.add_argument("--base", help="base weights to start from (default: packaged or trained)")
    experiment.add_argument(
        "--budget-min",
        action="append",
        default=[],
        metavar="[ARM=]MINUTES",
        help="simulated minutes per arm (default: the size's); ARM=MINUTES for one arm, e.g. hg_dagger_1=120",
    )
    experiment.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to train and infer")
    experiment.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change one study setting, e.g. learner_steps_per_s=4",
    )
    experiment.add_argument(
        "--report-only", action="store_true", help="rebuild the report from the arms already in --out"
    )
    experiment.add_argument(
        "--resume",
        action="store_true",
        help="arms in --out go on from their last saved evaluation (to a longer --budget-min, or "
        "after being stopped) instead of starting over",
    )
    experiment.set_defaults(handler=_cmd_experiment)

    info = sub.add_parser("info", help="print versions and the ROS environment")
    info.set_defaults(handler=_cmd_info)

    robot = sub.add_parser("robot", help="run one robot's whole node graph in this process")
    robot.add_argument("--robot-id", default="robot_1", help="robot name, also its ROS namespace")
    robot.add_argument(
        "--sim", action="store_true", help="drive the simulated robot and its scripted operator"
    )
    robot.add_argument("--params-file", help="ROS params file applied to every node")
    robot.add_argument(
        "--learner", help="learner endpoint (e.g. tcp/127.0.0.1:7447): also run bridge and param_update"
    )
    robot.add_argument(
        "--zenoh-config", help="zenoh json5 config for the fleet link (default config/zenoh/robot.json5)"
    )
    robot.add_argument(
        "--set", action="append", default=[], metavar="NODE:PARAM=VALUE", help="override one parameter"
    )
    robot.set_defaults(handler=_cmd_robot)

    learner = sub.add_parser("learner", help="run the cloud learner: router, bag ingest, training, weights")
    learner.add_argument("--config", help="YAML file of learner settings (nested or dotted names)")
    learner.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one setting, e.g. sampler.alpha=2",
    )
    learner.set_defaults(handler=_cmd_learner)

    offline = sub.add_parser(
        "train-offline", help="train or fine-tune a policy from a directory of bags (e.g. demonstrations)"
    )
    offline.add_argument("--bags", required=True, help="directory searched for rosbag2 bag directories")
    offline.add_argument("--out", required=True, help="trainable weights file to write (.safetensors)")
    offline.add_argument("--steps", type=int, default=2000, help="training steps")
    # Left out, batch size and algorithm take train_offline's defaults (argparse sets no value).
    offline.add_argument(
        "--batch-size", type=int, default=argparse.SUPPRESS, help="samples per step (default: the learner's)"
    )
    _add_algorithm_argument(offline, argparse.SUPPRESS, "that of the learner")
    offline.add_argument("--initial-weights", help="weights to fine-tune instead of the base model's")
    offline.add_argument("--config", help="YAML file of policy settings (PolicyConfig field names)")
    offline.add_argument(
        "--sim", action="store_true", help="start from the simulated robot's policy settings"
    )
    offline.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="one policy setting"
    )
    offline.set_defaults(handler=_cmd_train_offline)

    params = sub.add_parser("params", help="print a commented params file with a node's defaults")
    params.add_argument("nodes", nargs="*", metavar="NODE", help="node executable names (default: all)")
    params.add_argument("--markdown", action="store_true", help="a Markdown reference instead of YAML")
    params.set_defaults(handler=_cmd_params)
    add_checkpoint_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sop`` command line."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except SopError as err:
        print(f"sop {args.command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
