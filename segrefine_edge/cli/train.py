"""`segrefine-edge train`: train the segmenter (TensorFlow, imported lazily)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from segrefine_edge.cli.lazy_tf import require_tensorflow
from segrefine_edge.cli.options import FiniteRange
from segrefine_edge.models import default_model_path


@click.group()
def train() -> None:
    """Train models (needs the 'train' extra: pip install 'segrefine-edge[train]')."""


@train.command("segmenter")
@click.option("--data", required=True, help="Dataset root (CamVid, VOC or images/ + masks/ layouts).")
@click.option("--out", "run_dir", required=True, help="Run folder: config, checkpoints, logs, best weights.")
@click.option("--config", "config_file", default=None, help="JSON config (see a run's config.json).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set model.alpha=0.5 --set augment.crop_hw=[320,320].")
@click.option("--epochs", type=click.IntRange(1), default=None)
@click.option("--batch", type=click.IntRange(1), default=None)
@click.option("--backbone-weights", default=None, help="MobileNetV2 ImageNet .weights.h5 (see ../shared/weights).")
@click.option("--strategy", type=click.Choice(("default", "mirrored", "multi-worker")), default=None,
              help="tf.distribute strategy: mirrored spreads batches over every local GPU; multi-worker "
                   "over the machines named in TF_CONFIG (run the same command on each).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
def segmenter(data, run_dir, config_file, overrides, epochs, batch, backbone_weights, strategy, resume) -> None:
    """Train DeepLabv3+ (MobileNetV2) and keep the best checkpoint by val mIoU (with --set
    held_out_sequence=NAME: train on every other drive, score that one, keep the last epoch; with
    --set final_fit=true: train on train + val, keep the last epoch)."""
    require_tensorflow("train")
    from segrefine_edge.training.config import TrainConfig, apply_overrides, load_config
    from segrefine_edge.training.segmenter_loop import train_segmenter

    config = load_config(config_file) if config_file else TrainConfig()
    flags = {"data": data, "epochs": epochs, "batch": batch, "backbone_weights": backbone_weights, "strategy": strategy}
    settings = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    config = apply_overrides(config, [*settings, *overrides])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    kept = train_segmenter(config, run_dir, resume=resume)
    if config.held_out_sequence:
        click.echo(f"held-out {config.held_out_sequence} mIoU {kept.get('held_out_miou', float('nan')):.4f} at the "
                   f"last epoch ({kept.get('epoch')}); weights in {run_dir}/best.weights.h5")
    elif config.final_fit:
        click.echo(f"final fit: the last epoch ({kept.get('epoch')}) kept; val mIoU "
                   f"{kept.get('seen_val_miou', float('nan')):.4f} on images it trained on (a check, not a "
                   f"score); weights in {run_dir}/best.weights.h5")
    else:
        click.echo(f"best val mIoU {kept.get('val_miou', float('nan')):.4f} at epoch {kept.get('epoch')}; "
                   f"weights in {run_dir}/best.weights.h5")


@train.command("refiner")
@click.option("--segmenter", required=True,
              help="The frozen segmenter: its training run folder, a .tflite model, or 'default' (the shipped one).")
@click.option("--data", required=True, help="Dataset root (the segmenter's).")
@click.option("--out", "run_dir", required=True, help="Run folder for the refiner.")
@click.option("--adversarial-weight", type=FiniteRange(0), default=0.0, show_default=True,
              help="Weight of the PatchGAN loss; 0 trains the cross-entropy-only refiner.")
@click.option("--temporal", is_flag=True,
              help="Video refiner: also takes the previous frame's refined mask (trained on moved copies).")
@click.option("--heldout-segmenter", "heldout", multiple=True, metavar="RUN",
              help="A segmenter run trained with one fold left out (--set folds=2 --set held_out=K), once per "
                   "fold, or with drives left out (--set held_out_sequence=A,B): its outputs on the images it "
                   "left out are inputs from images it never saw.")
@click.option("--steps", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any config value.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint (same options).")
def refiner(segmenter, data, run_dir, adversarial_weight, temporal, heldout, steps, batch, seed, overrides,
            resume) -> None:
    """Train the boundary refiner on the frozen segmenter's outputs (CE, or CE + adversarial).
    Under the protocol (--set held_out_sequence=NAME, with the segmenter run that left NAME out) it
    trains on every other drive, scores NAME at every check and keeps the last checkpoint; with
    --set final_fit=true it trains on train + val and keeps the last checkpoint."""
    require_tensorflow("train")
    from segrefine_edge.training.config import apply_overrides
    from segrefine_edge.training.refiner_loop import (
        RefinerTrainConfig,
        keeps_last_checkpoint,
        scored_name,
        train_refiner,
    )

    if segmenter == "default":
        shipped = default_model_path()
        if shipped is None:
            raise click.UsageError("this build ships no default segmenter; pass a run folder or a .tflite model")
        segmenter = str(shipped)
    flags = {"segmenter": segmenter, "data": data, "adversarial_weight": adversarial_weight, "steps": steps,
             "batch": batch, "seed": seed, "model.temporal": temporal, "heldout_segmenters": list(heldout)}
    config = apply_overrides(RefinerTrainConfig(), [*(f"{k}={json.dumps(v)}" for k, v in flags.items()), *overrides])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    best = train_refiner(config, run_dir, resume=resume)
    chosen = "kept the last step," if keeps_last_checkpoint(config) else "best at step"
    kept = f"{chosen} {best.get('step')}: {scored_name(config)}"
    click.echo(f"{kept} mIoU {best.get('segmenter_miou', 0):.4f} -> "
               f"{best.get('refined_miou', 0):.4f}, Boundary F {best.get('segmenter_boundary_f', 0):.4f} -> "
               f"{best.get('refined_boundary_f', 0):.4f}; weights in {run_dir}/best.weights.h5")


@train.command("protocol")
@click.argument("runs", nargs=-1, required=True)
@click.option("--json", "json_path", default=None, help="Write every recipe's figures as JSON.")
def protocol(runs, json_path) -> None:
    """Compare recipes under the held-out-sequence protocol (RUNS: segmenter or refiner runs trained
    with --set held_out_sequence=NAME; runs that differ only in seed and sequence are one recipe):
    a segmenter recipe's mean held-out mIoU over the sequences left out, a refiner recipe's Boundary F
    and mIoU gain over its fold's segmenter there, each with the spread between seeds.
    Reads run folders only: no TensorFlow needed."""
    from segrefine_edge.datasets import read_class_info
    from segrefine_edge.sinks import check_output_file
    from segrefine_edge.training.protocol import collect, format_recipes
    from segrefine_edge.training.run_folder import read_run_config

    if json_path:
        check_output_file(json_path, "--json")
    recipes = collect(list(runs))
    info = read_class_info(read_run_config(runs[0]).get("data", ""))
    click.echo(format_recipes(recipes, info.names if info else None))
    if json_path:
        from segrefine_edge.atomic import write_atomic

        write_atomic(Path(json_path), json.dumps([r.summary() for r in recipes], indent=1).encode())
