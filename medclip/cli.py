"""``medclip`` command line: one sub-command per registered recipe, plus ``inspect``, ``recipes``, ``export``, ...

medclip quickstart --out DIR
medclip pretrain --config recipes/configs/pretrain_example.yaml train.steps=100 --out runs/x
medclip inspect PATH [--modality NAME]
medclip recipes list | medclip recipes copy pretrain my.yaml [--file ct_report_pretrain.yaml]
medclip convert-weights IN.pt OUT.safetensors [--trust-pickle] [--from FORMAT --to MODALITY]
medclip export CHECKPOINT --format onnx --modality report --out DIR
medclip export-card CHECKPOINT

Building the parser imports neither torch nor any recipe (``medclip --help`` answers in well under a second): recipes
are described from their source (``recipe_summaries``) and everything heavy is imported by the handler that runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import ConfigError, load
from .errors import MedclipError
from .recipe_registry import RECIPES, RecipeSummary, bundled_configs, recipe_config_path, recipe_summaries
from .registry import RegistryError


def _recipe_parser(subparsers, summary: RecipeSummary) -> None:
    text = summary.help.replace("%", "%%")  # argparse treats help text as a %-format string
    configs = [path.name for path in bundled_configs(summary)]
    epilog = None
    if configs:
        listed = ", ".join(f"{name} (default)" if name == summary.default_config else name for name in configs)
        epilog = (
            f"bundled configs: {listed}. Copy one to edit: medclip recipes copy {summary.command} my.yaml "
            f"[--file NAME.yaml]"
        )
    parser = subparsers.add_parser(summary.command, help=text, description=text, epilog=epilog)
    parser.add_argument("--config", help="YAML config (defaults to the recipe's bundled config)")
    parser.add_argument("--out", help="output directory (same as out=DIR)")
    parser.add_argument("--resume", help="checkpoint directory to continue from (same as train.resume=DIR)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.lr=3e-4")
    parser.set_defaults(handler=_run_recipe, recipe_summary=summary)


def _run_recipe(args: argparse.Namespace) -> int:
    recipe = RECIPES.get(args.recipe_summary.name)
    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out={args.out}")
    if args.resume:
        overrides.append(f"train.resume={args.resume}")
    overrides += _flag_overrides(recipe, getattr(args, "flags", []))
    path = args.config or recipe_config_path(recipe)
    config = load(recipe.Config, path, overrides)
    metrics = recipe.main(config)
    if metrics and not getattr(recipe, "PRINTS_OWN_SUMMARY", False):
        print(json.dumps(metrics, indent=1, default=float))
    return 0


def _flag_overrides(recipe, flags: Sequence[tuple[str, str]]) -> list[str]:
    """``--name VALUE`` options given after a recipe command -> ``key=value`` overrides of its ``Config``.

    ``--some-name`` sets the field ``some_name`` (or the field the recipe's ``FLAG_FIELDS`` maps it to, e.g.
    ``--phrase`` -> ``phrases``). For a list field every occurrence adds one item (``--phrase A --phrase B``; a phrase
    may hold commas), and a number list also takes commas (``--rows 1,5,9``).
    """
    import dataclasses
    import typing

    hints = typing.get_type_hints(recipe.Config)
    aliases = getattr(recipe, "FLAG_FIELDS", {})
    values: dict[str, list[str]] = {}
    for flag, value in flags:
        name = flag.removeprefix("--").replace("-", "_")
        values.setdefault(aliases.get(name, name), []).append(value)
    overrides = []
    fields = {field.name for field in dataclasses.fields(recipe.Config)}
    for key, items in values.items():
        if key not in fields:
            raise ConfigError(f"unknown option --{key.replace('_', '-')} for this recipe; its keys: {sorted(fields)}")
        if typing.get_origin(hints[key]) is list:
            item_type = (typing.get_args(hints[key]) or (str,))[0]
            if item_type in (int, float):
                items = [part.strip() for item in items for part in item.split(",") if part.strip()]
                overrides.append(f"{key}=[{', '.join(items)}]")
            else:
                overrides.append(f"{key}={json.dumps(items)}")
        elif len(items) > 1:
            raise ConfigError(f"option --{key.replace('_', '-')} was given {len(items)} times; it takes one value")
        else:
            overrides.append(f"{key}={items[0]}")
    return overrides


def _inspect(args: argparse.Namespace) -> int:
    from .inspect import inspect_input

    print(json.dumps(inspect_input(args.path, modality=args.modality), indent=1, default=str))
    return 0


def _find_recipe(name: str) -> RecipeSummary:
    summaries = recipe_summaries()
    for summary in summaries:
        if name in (summary.name, summary.command):
            return summary
    known = ", ".join(summary.command for summary in summaries)
    raise ConfigError(f"unknown recipe {name!r}; recipes: {known}")


def _bundled_config(name: str) -> tuple[RecipeSummary, Path] | None:
    """The recipe and path of a bundled config named by its file name (``ct_report_pretrain.yaml``), or None."""
    for summary in recipe_summaries():
        for path in bundled_configs(summary):
            if path.name == name:
                return summary, path
    return None


def _recipes(args: argparse.Namespace) -> int:
    if args.action == "list":
        for summary in recipe_summaries():
            print(f"{summary.command:<14} {summary.help}")
            for path in bundled_configs(summary):
                default = "  (default)" if path.name == summary.default_config else ""
                print(f"{'':<14}   {path.name:<26} medclip recipes copy {summary.command} my.yaml --file {path.name}"
                      f"{default}")  # fmt: skip
        return 0
    if not args.name or not args.dest:
        raise ConfigError(
            "usage: medclip recipes copy RECIPE DEST.yaml [--file CONFIG.yaml] (or: medclip recipes copy CONFIG.yaml "
            "DEST.yaml); `medclip recipes list` shows every bundled config"
        )
    named_config = _bundled_config(args.name) if args.name.endswith(".yaml") and not args.file else None
    if named_config is not None:
        summary, source = named_config
    else:
        summary = _find_recipe(args.name)
        source = recipe_config_path(summary, args.file)
    if source is None or not source.is_file():
        available = ", ".join(path.name for path in bundled_configs(summary)) or "none"
        raise ConfigError(f"recipe {summary.command!r} has no bundled config {args.file or ''}; it has: {available}")
    if Path(args.dest).exists():
        raise ConfigError(f"{args.dest} exists; not overwriting it")
    shutil.copyfile(source, args.dest)
    print(f"copied {source.name} to {args.dest}")
    return 0


def _convert_weights(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError
    from .weights import convert_weights

    if args.importer:
        return _import_weights(args)
    if args.to:
        print("medclip: error: --to needs --from FORMAT (which release the weights come from)", file=sys.stderr)
        return 2
    try:
        path = convert_weights(args.source, args.destination, trust_pickle=args.trust_pickle)
    except CheckpointError as error:
        print(f"medclip: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _import_weights(args: argparse.Namespace) -> int:
    """``convert-weights --from FORMAT --to MODALITY``: a key-mapped file, and the options the user should set."""
    import yaml

    from .checkpoint import CheckpointError
    from .weights.importers import ImportOptions, convert_foreign, register_builtin_importers

    register_builtin_importers()
    options = ImportOptions(
        trust_pickle=args.trust_pickle,
        arch=args.arch or "",
        quickgelu=args.quickgelu,
        in_channels=args.in_channels or 0,
        vocab=args.vocab or "",
        heads=args.heads or 0,
        pixel_mean=args.pixel_mean,
        pixel_std=args.pixel_std,
    )
    try:
        result = convert_foreign(args.source, args.destination, args.importer, args.to or "", options)
    except CheckpointError as error:
        print(f"medclip: error: {error}", file=sys.stderr)
        return 2
    where = f" into `{result.scope}`" if result.scope else ""
    print(f"wrote {result.destination} ({result.tensors} tensors for the {result.modality} encoder{where})")
    for note in result.notes:
        print(f"  - {note}")
    options_block = dict(result.settings)
    if "hf_model" not in options_block:  # a weights file (hf_text writes a model folder, named by hf_model)
        options_block["weights"] = str(result.destination)
    print("set in your config:")
    print(yaml.safe_dump({"modalities": {result.modality: options_block}}, sort_keys=False).rstrip())
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_tower

    written = export_tower(
        args.checkpoint,
        args.modality,
        args.format,
        args.out,
        allow_download=args.hub,
        check=not args.no_check,
        examples=args.example or (),
    )
    print(json.dumps({"model": str(written.model), "sidecar": str(written.sidecar), "check": written.check}, indent=1))
    return 0


def _export_card(args: argparse.Namespace) -> int:
    from .model_card import write_model_card

    path = write_model_card(args.checkpoint)
    print(f"wrote {path}")
    return 0


def _add_export_commands(subparsers) -> None:
    export = subparsers.add_parser(
        "export",
        help="export one modality's tower (encoder + projection head) for serving: ONNX, TorchScript or torch.export",
        description="Export one modality tower of a checkpoint with a dynamic batch (and sequence length where the "
        "modality's inputs vary), check it numerically against the eager model, and write a JSON sidecar describing "
        "its preprocessing, inputs and outputs. See docs/export.md.",
    )
    export.add_argument("checkpoint", help="a checkpoint directory (or a hub id with --hub)")
    export.add_argument("--format", required=True, help="onnx | torchscript | exported-program")
    export.add_argument("--modality", required=True, help="which tower to export (a modality of the checkpoint)")
    export.add_argument("--out", required=True, help="output directory")
    export.add_argument("--hub", action="store_true", help="CHECKPOINT is a Hugging Face hub id: download it")
    export.add_argument("--no-check", action="store_true", help="skip the numerical check against the eager model")
    export.add_argument(
        "--example",
        action="append",
        metavar="REF",
        help="a real input to export and check with (repeat; default: the modality's synthetic samples)",
    )
    export.set_defaults(handler=_export)
    card = subparsers.add_parser(
        "export-card",
        help="(re)write a checkpoint's README.md model card (Hugging Face layout; counts only, no identifiers)",
    )
    card.add_argument("checkpoint", help="a checkpoint directory")
    card.set_defaults(handler=_export_card)


RECIPE_OPTIONS = {"--config", "--out", "--resume", "--help", "-h"}  # what _recipe_parser itself defines


def _recipe_flags(argv: list[str], parser: argparse.ArgumentParser) -> tuple[list[str], list[tuple[str, str]]]:
    """Take the ``--name VALUE`` options of a recipe's Config (see ``_flag_overrides``) out of ``argv``, for recipes
    that declare ``FLAG_FIELDS`` (option name -> Config field where they differ; others keep argparse's refusal).

    Done before argparse, whose ``key=value`` positional would otherwise swallow the options' values.
    """
    commands = {summary.command: summary.name for summary in recipe_summaries()}
    start = next((index for index, item in enumerate(argv) if not item.startswith("-")), len(argv))
    if start == len(argv) or argv[start] not in commands:
        return argv, []
    options = [item.partition("=")[0] for item in argv[start + 1 :] if item.startswith("--") and item != "--"]
    if all(option in RECIPE_OPTIONS for option in options):
        return argv, []
    if not hasattr(RECIPES.get(commands[argv[start]]), "FLAG_FIELDS"):  # options only for recipes that take them
        return argv, []
    rest, flags, items = argv[: start + 1], [], argv[start + 1 :]
    while items:
        item = items.pop(0)
        name, equals, value = item.partition("=")
        if not item.startswith("--") or item == "--" or name in RECIPE_OPTIONS:
            rest.append(item)
            if name in RECIPE_OPTIONS - {"--help", "-h"} and not equals and items:
                rest.append(items.pop(0))  # the option's own value
            continue
        if not equals:
            if not items or items[0].startswith("--"):
                parser.error(f"option {name} needs a value")
            value = items.pop(0)
        flags.append((name, value))
    return rest, flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medclip", description="Align medical modalities in one embedding space with contrastive learning."
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="command")
    for summary in recipe_summaries():
        _recipe_parser(subparsers, summary)
    inspect = subparsers.add_parser("inspect", help="JSON summary of one input (never an identifier)")
    inspect.add_argument("path", help="a file, DICOM series folder, or reference such as cells.h5ad#row=0")
    inspect.add_argument("--modality", help="modality plugin to read it with (guessed from the suffix otherwise)")
    inspect.set_defaults(handler=_inspect)
    recipes = subparsers.add_parser(
        "recipes", help="list recipes and every bundled config, or copy a bundled config to edit"
    )
    recipes.add_argument("action", choices=["list", "copy"])
    recipes.add_argument("name", nargs="?", help="a recipe (pretrain) or a bundled config's file name")
    recipes.add_argument("dest", nargs="?", help="where to write the copy")
    recipes.add_argument("--file", help="which bundled config of the recipe to copy (default: its main one)")
    recipes.set_defaults(handler=_recipes)
    convert = subparsers.add_parser(
        "convert-weights",
        help="convert foreign weights to safetensors, never running pickled code; with --from/--to, map a release "
        "(open_clip, timm, MONAI, MedicalNet, Hugging Face text) onto a modality's encoder",
        description="Without --from: a plain copy of the tensors into safetensors. With --from FORMAT --to MODALITY: "
        "the release's keys are mapped onto the modality's encoder and checked; the file then goes into the "
        "modality's weights: option (printed). See docs/warm_start.md.",
    )
    convert.add_argument("source", help="the weights: a .safetensors file or folder, or a pickle-based PyTorch file")
    convert.add_argument("destination", help="the .safetensors file to write (a folder for --from hf_text)")
    convert.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow a pickle-based file; it is read with torch.load(weights_only=True), which accepts tensors only",
    )
    convert.add_argument(
        "--from",
        dest="importer",
        metavar="FORMAT",
        help="the release's format: open_clip, timm, monai_resnet, medicalnet, hf_text",
    )
    convert.add_argument(
        "--to", metavar="MODALITY", help="the modality whose encoder takes the weights (wsi, report, ct)"
    )
    convert.add_argument("--arch", help="the target timm model (--from timm; open_clip towers built on timm)")
    convert.add_argument("--quickgelu", action="store_true", help="open_clip weights trained with QuickGELU (OpenAI's)")
    convert.add_argument("--in-channels", type=int, help="3-D ResNets: input channels of the encoder (ct: HU windows)")
    convert.add_argument("--vocab", help="open_clip text: CLIP's merges file (default: the installed open_clip's)")
    convert.add_argument("--heads", type=int, help="open_clip text: attention heads (default: width / 64)")
    convert.add_argument("--pixel-mean", type=float, nargs=3, help="image towers: the mean the weights expect (R G B)")
    convert.add_argument("--pixel-std", type=float, nargs=3, help="image towers: the std the weights expect (R G B)")
    convert.set_defaults(handler=_convert_weights)
    _add_export_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv, flags = _recipe_flags(list(sys.argv[1:] if argv is None else argv), parser)
    # Overrides may come before or after options (`--out X key=value`): argparse leaves the later ones unparsed.
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "hub", False):  # never reach for a model hub unless the user asks for it (--hub)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if hasattr(args, "overrides"):
        args.flags = flags
    if extra:
        if not hasattr(args, "overrides") or any(item.startswith("-") or "=" not in item for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        return args.handler(args)
    except (ConfigError, RegistryError) as error:
        print(f"medclip: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, MedclipError) as error:
        # User-facing problems (a manifest, checkpoint or evaluation refused with its reason) end with their message;
        # --verbose shows the traceback for bug reports.
        if args.verbose:
            raise
        message = f"medclip: error: {type(error).__name__}: {error} (run with --verbose for the traceback)"
        print(message, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
