"""`segrefine-edge eval`: score models side by side on a labelled split and a video sequence."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from pathlib import Path

import click

from segrefine_edge.cli.options import (
    fit_option,
    keyframes_option,
    resolve_model_path,
    runtime_options,
    temporal_blend_option,
)
from segrefine_edge.datasets import dataset_classes, find_pairs, unsplit_layout_note
from segrefine_edge.errors import DatasetError
from segrefine_edge.evaluate import ModelRun, label_table, results, score_sequence, score_split
from segrefine_edge.pipeline import Pipeline, check_segmenter
from segrefine_edge.refiner import IdentityRefiner, open_refiner
from segrefine_edge.report import check_report_extra, format_table, write_report
from segrefine_edge.segmenter import Segmenter
from segrefine_edge.sinks import check_not_an_input, check_output_file, check_writable_dir
from segrefine_edge.sources import open_source


def _progress(label: str, length: int | None = None, quiet: bool = False):
    """A progress bar with ETA on stderr (click prints just the label when stderr is not a
    terminal; nothing with --quiet). Items are consumed as they come: a video is never held in
    memory whole."""
    def wrap(items: Iterable) -> Iterable:
        if quiet:
            yield from items
            return
        with click.progressbar(items, length=length, label=label, show_eta=True, show_pos=True,
                               file=click.get_text_stream("stderr")) as bar:
            yield from bar
    return wrap


def _unique_names(paths: list[str]) -> list[str]:
    names: list[str] = []
    for path in paths:
        stem = Path(path).stem
        names.append(stem if stem not in names else f"{stem}#{len(names) + 1}")
    return names


@click.command("eval")
@click.option("--data", default=None, help="Dataset root: CamVid (val/ + valannot/), VOC, or images/ + masks/.")
@click.option("--split", default="val", show_default=True)
@click.option("--only", "only", default=None, metavar="PATTERN",
              help="Score only the images whose file name matches (e.g. '0006R0_*': one drive, as the "
                   "held-out-sequence protocol leaves it out).")
@click.option("--model", "-m", "models", multiple=True, help="Segmenter .tflite; repeat for one column per model "
              "(default: the shipped CamVid model).")
@click.option("--refiner", "refiner_specs", multiple=True, help="Refiner .tflite or 'guided-filter' (repeatable): "
              "adds a 'model+refiner' column per model.")
@temporal_blend_option
@keyframes_option
@fit_option
@runtime_options
@click.option("--class-map", default=None, help="JSON map from a model's classes to the dataset's, or a built-in "
              "name (cityscapes-camvid), for models trained on other classes.")
@click.option("--sequence", default=None, help="Ordered frames (folder or glob) to score temporal consistency on.")
@click.option("--save-masks", default=None, help="Write predicted index PNGs here, named after the inputs.")
@click.option("--json", "json_path", default=None, help="Write every score as JSON.")
@click.option("--report", "report_dir", default=None, help="Write README.md with plots here (needs matplotlib).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars; the table only.")
def evaluate(data, split, only, models, refiner_specs, temporal_blend, keyframes, fit, runtime, delegate, threads, class_map, sequence, save_masks, json_path,
             report_dir, quiet) -> None:
    """Score models: mIoU, per-class IoU, Boundary F and Boundary IoU on --data, TC and flicker
    on --sequence, latency per frame; a column per model."""
    if not data and not sequence:
        raise DatasetError("nothing to score: give --data DIR (labelled split), --sequence FRAMES, or both")
    if report_dir:
        check_report_extra()
    paths = list(models) or [resolve_model_path(None)]
    pairs = find_pairs(data, split) if data else []
    if only:
        pairs = [pair for pair in pairs if fnmatch.fnmatch(pair.image.name, only)]
        if not pairs:
            raise DatasetError(f"no image of split '{split}' in {data} matches --only '{only}'; CamVid names "
                               "its frames SEQUENCE_FRAME.png (e.g. '0006R0_*')")
    note = unsplit_layout_note(data, split) if data else None
    if note and split != "val":
        click.echo(f"note: {note}", err=True)
    segmenters = [Segmenter.open(p, runtime, delegate, threads) for p in paths]
    for segmenter in segmenters:
        check_segmenter(segmenter)        # a classifier is no segmenter, whatever its classes
    classes = dataset_classes(data, segmenters[0].contract.labels)
    inputs = [path for pair in pairs for path in (pair.image, pair.mask)]
    for output, purpose in ((save_masks, "--save-masks"), (json_path, "--json"), (report_dir, "--report")):
        if output:
            check_not_an_input(output, inputs, purpose)
    if save_masks:
        check_writable_dir(Path(save_masks), "masks")
    if json_path:
        check_output_file(json_path, "the scores")
    runs = []
    for name, path, segmenter in zip(_unique_names(paths), paths, segmenters, strict=True):
        table, origin = label_table(segmenter.contract.labels, classes, class_map, name)
        # Refiners opened per model: a temporal refiner's last mask belongs to one column; shared,
        # it would hand one model's output on a frame to the next model's run of the same frame.
        refiners = [IdentityRefiner()] + [open_refiner(spec, runtime, delegate, threads, temporal_blend)
                                        for spec in refiner_specs]
        for stage in refiners:
            column = name if isinstance(stage, IdentityRefiner) else f"{name}+{stage.name}"
            column_keyframes = keyframes if getattr(stage, "temporal", False) else 1   # only a temporal refiner carries scores
            runs.append(ModelRun(column, path, Pipeline.from_parts(segmenter, stage, "video", column_keyframes, fit), table,
                                 origin, classes))
    if pairs:
        score_split(runs, pairs, Path(save_masks) if save_masks else None,
                    _progress(f"scoring {len(pairs)} images x {len(runs)} model(s)", quiet=quiet))
    frames = 0
    if sequence:
        source = open_source(sequence)
        frames = score_sequence(runs, source, _progress("sequence", source.length, quiet))
    scores = [results(run) for run in runs]
    click.echo(format_table(scores))
    context = (f"Data: {data} split '{split}' ({len(pairs)} images)" if data else "No labelled split.") + (
        f" Sequence: {sequence} ({frames} frames)." if sequence else "")
    if json_path:
        Path(json_path).write_text(json.dumps({"data": data, "split": split, "sequence": sequence,
                                               "images": len(pairs), "sequence_frames": frames,
                                               "models": scores}, indent=1))
    if report_dir:
        click.echo(f"report: {write_report(Path(report_dir), scores, context)}", err=True)
