"""The training-trajectory recorder: a run's configuration (``config``), how it steps
(``rules``: SGD, GD, GD + noise and registered rules; ``schedules``: learning rates),
what it measures and when (``metrics``), the loop (``loop``), and the rules and metrics
that paper sections register (``plugins``, entry points). Imports ``core`` and
``curvature`` only; never names a paper section."""
from breakeven_utils.recorder.config import RunConfig, config_from_profile
from breakeven_utils.recorder.loop import Diverged, TrainOutput, build_run_model, load_run_data, train
from breakeven_utils.recorder.metrics import (
    DEFAULT_METRICS,
    METRIC_COLUMNS,
    MeasureContext,
    measurement_iterations,
    register_metric,
)
from breakeven_utils.recorder.rules import (
    UPDATE_RULES,
    GDNoiseRule,
    RuleContext,
    SGDRule,
    UpdateRule,
    register_rule,
)
from breakeven_utils.recorder.schedules import Schedule

__all__ = ["RunConfig", "config_from_profile", "train", "TrainOutput", "Diverged", "build_run_model",
           "load_run_data", "DEFAULT_METRICS", "METRIC_COLUMNS", "MeasureContext", "measurement_iterations",
           "register_metric", "UPDATE_RULES", "UpdateRule", "SGDRule", "GDNoiseRule", "RuleContext",
           "register_rule", "Schedule"]
