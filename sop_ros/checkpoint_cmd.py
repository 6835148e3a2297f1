"""``sop checkpoint``: inspect π0 checkpoint directories and export post-trained policies as ones.

``sop checkpoint inspect DIR`` prints what a checkpoint is and expects;
``sop checkpoint export --base DIR --weights FILE --out DIR`` writes a
post-trained weights version on top of its base as a checkpoint directory that
LeRobot and ``transformers`` load. The work is done in
:mod:`sop_ros.core.policy.export`; this module only parses arguments.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

__all__ = ["add_checkpoint_parser"]


def _cmd_inspect(args: argparse.Namespace) -> int:
    from sop_ros.core.policy.export import format_report, inspect_checkpoint, report_document

    report = inspect_checkpoint(args.dir, tokenizer=args.tokenizer)
    print(json.dumps(report_document(report), indent=2) if args.json else format_report(report))
    return 1 if report.weight_problems else 0


def _policy_settings(args: argparse.Namespace) -> dict[str, object]:
    from sop_ros.core.config import flatten_mapping, parse_assignments

    values = flatten_mapping(yaml.safe_load(Path(args.config).read_text()) or {}) if args.config else {}
    return {**values, **parse_assignments(args.set)}


def _cmd_export(args: argparse.Namespace) -> int:
    from sop_ros.core.config import config_from_flat
    from sop_ros.core.policy import PolicyConfig, make_policy
    from sop_ros.core.policy.export import export_checkpoint

    values = {**_policy_settings(args), "model": args.base, "device": "cpu", "dtype": "float32"}
    if args.tokenizer:
        values["tokenizer"] = args.tokenizer
    policy = make_policy(config_from_flat(PolicyConfig, values))
    policy.load_trainable(args.weights)
    out = export_checkpoint(policy, args.out, version=policy.active_version, weights_file=args.weights)
    print(f"{policy.active_version} on {args.base} written to {out} (transformers: {out}/transformers)")
    return 0


def add_checkpoint_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``checkpoint inspect`` and ``checkpoint export`` to the ``sop`` command."""
    checkpoint = sub.add_parser("checkpoint", help="inspect π0 checkpoints; export post-trained ones")
    actions = checkpoint.add_subparsers(dest="checkpoint_command", required=True)
    inspect = actions.add_parser("inspect", help="what a checkpoint is and what it expects")
    inspect.add_argument("dir", help="checkpoint directory (LeRobot's or transformers' layout)")
    inspect.add_argument("--tokenizer", help="the 'tokenizer' setting the policy would get")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.set_defaults(handler=_cmd_inspect)
    export = actions.add_parser(
        "export", help="a post-trained weights version + its base -> a LeRobot/transformers checkpoint"
    )
    export.add_argument("--base", required=True, help="the LeRobot π0 checkpoint the policy started from")
    export.add_argument("--weights", required=True, help="published weights file (.safetensors) to apply")
    export.add_argument("--out", required=True, help="checkpoint directory to write")
    export.add_argument("--tokenizer", help="PaliGemma tokenizer directory, if the base has none")
    export.add_argument("--config", help="YAML of the robots' policy settings (PolicyConfig names)")
    export.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="one policy setting")
    export.set_defaults(handler=_cmd_export)
