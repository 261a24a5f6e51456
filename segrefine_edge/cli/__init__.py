"""The `segrefine-edge` command: one Click group whose commands load lazily.

Heavy commands (train, convert: TensorFlow) are imported only when invoked, so `--help`
and every runtime command work without TensorFlow installed. The library raises
SegrefineError subclasses; this module turns them into one line on stderr and an exit code.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from segrefine_edge.errors import SegrefineError

COMMANDS = {
    "stream": ("segrefine_edge.cli.stream", "stream", "Segment a camera, video, stream or images in real time."),
    "eval": ("segrefine_edge.cli.eval", "evaluate", "Score models: mIoU, Boundary F/IoU, temporal consistency, latency."),
    "annotate": ("segrefine_edge.cli.annotate", "annotate", "Annotate video into CVAT, COCO, Label Studio or PNG masks; "
                 "resumable."),
    "bench": ("segrefine_edge.cli.bench", "bench", "Measure model invoke latency (median, p95); compare two models."),
    "convert": ("segrefine_edge.cli.convert", "convert", "Export to TFLite (float, int8, EdgeTPU) with validation."),
    "train": ("segrefine_edge.cli.train", "train", "Train the segmenter or a refiner (needs the 'train' extra)."),
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs or shows its help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, _, help_text) in COMMANDS.items()])

    def invoke(self, ctx: click.Context):
        argv = [*getattr(ctx, "_protected_args", []), *ctx.args]     # the group clears them while invoking
        try:
            return super().invoke(ctx)
        except click.BadParameter as exc:
            _name_the_environment(exc, argv)
            raise
        except SegrefineError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def _name_the_environment(exc: click.BadParameter, argv: list[str]) -> None:
    """A bad value that came from a SEGREFINE_EDGE_* variable is reported as that variable, not
    as the option the user never typed."""
    param, sub = exc.param, exc.ctx
    if param is None or sub is None or sub.auto_envvar_prefix is None or not isinstance(param, click.Option):
        return
    variable = f"{sub.auto_envvar_prefix}_{param.name.upper()}"
    typed = any(arg.split("=")[0] in param.opts for arg in argv)
    if variable in os.environ and not typed:
        exc.message = f"{exc.message} (from the environment variable {variable})"


@click.group(cls=LazyGroup, context_settings={"auto_envvar_prefix": "SEGREFINE_EDGE",
                                              "help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segrefine-edge")
def main() -> None:
    """Real-time video segmentation for edge devices: a MobileNet-DeepLab segmenter and a
    GAN-trained boundary refiner, run with LiteRT on CPU, GPU or Coral EdgeTPU."""


def run() -> None:
    """Console-script entry point.

    LiteRT's GPU environment logs from native code while Python frees it at exit. The library
    leaves its host's streams alone; this program, the host, silences them once its own output
    is flushed, and only when the GPU was used. A live source given up on may leave a capture
    thread inside OpenCV (a server that never answers); the program then leaves with os._exit
    once its output is flushed, since C++ destructors run under that thread would abort it.
    """
    code: int | str | None = 0
    try:
        main(prog_name="segrefine-edge")
    except SystemExit as exc:
        code = exc.code
    from segrefine_edge import litert_gpu, live
    from segrefine_edge.native import silence_native_output

    status = code if isinstance(code, int) else (0 if code is None else 1)
    if isinstance(code, str):
        click.echo(code, err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if live.captures_running():
        os._exit(status)
    if litert_gpu.environment_created():
        silence_native_output()
    sys.exit(status)
