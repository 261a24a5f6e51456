"""Scoring a run by the moving average of its weights without disturbing its training."""

from __future__ import annotations

import keras
import numpy as np

from segrefine_edge.errors import SegrefineError


def check_momentum(momentum: float) -> None:
    """A momentum of 1 would freeze the average at the initial weights; reject it before a run starts."""
    if not 0 <= momentum < 1:
        raise SegrefineError(f"ema_momentum {momentum} must be in [0, 1): 0 trains without weight "
                             "averaging, 0.99-0.999 average over about 100-1000 steps")


def ema_options(momentum: float) -> dict:
    """Keras optimizer arguments for ``ema_momentum`` (0: no averaging; Keras wants a momentum anyway)."""
    return {"use_ema": momentum > 0, "ema_momentum": momentum or 0.99}


def averaged_weights(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> list[np.ndarray]:
    """``model.get_weights()`` with every trainable variable replaced by the optimizer's moving
    average of it (the raw weights when the optimizer keeps none).

    Keras exposes the averages only by overwriting the model's variables, which would end the run's
    own trajectory; its list runs parallel to the variables the optimizer was built with.
    """
    if not optimizer.use_ema:
        return model.get_weights()
    averages = {id(var): avg for var, avg in zip(model.trainable_variables, moving_averages(optimizer), strict=True)}
    return [np.asarray(averages.get(id(var), var)) for var in model.weights]


def moving_averages(optimizer: keras.optimizers.Optimizer) -> list:
    """The optimizer's moving averages, one per variable it was built with.

    Keras keeps them in a private attribute (``_model_variables_moving_average``, Keras 3.x);
    this is the one place that reads it, so an upgrade that renames it fails here, in one line.
    """
    averages = getattr(optimizer, "_model_variables_moving_average", None)
    if averages is None:
        raise SegrefineError(f"Keras {keras.__version__} has no Optimizer._model_variables_moving_average; "
                             "training/averaging.py must learn where this Keras keeps its weight averages "
                             "(or set ema_momentum=0)")
    return list(averages)
