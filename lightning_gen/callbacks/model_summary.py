"""The model summary of ``fit``: one line of parameter counts instead of Lightning's table.

Lightning 2.6's table has a FLOPs column that reads 0 for every model without an
``example_input_array`` (ours: the families sample, they have no single input) and a "Mode"
column; the line keeps what a user checks: the model, its top-level networks with their
parameter counts, the trainable and total counts and the size.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities import rank_zero_only

PARAMS_COLUMN, NAME_COLUMN, TYPE_COLUMN = "Params", "Name", "Type"


class ParameterSummary(ModelSummary):
    """Print ``model: <class> - <net> <type> <params>, ...; <trainable> trainable, <total> in all (<MB> MB)`` on rank 0."""

    def __init__(self) -> None:
        super().__init__(max_depth=1)
        self.line = ""

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._model_name = type(pl_module).__name__
        super().on_fit_start(trainer, pl_module)

    def summarize(  # type: ignore[override]  # Lightning calls it on the instance
        self,
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int = 0,
        **summarize_kwargs: Any,
    ) -> None:
        self.line = summary_line(self._model_name, summary_data, total_parameters, trainable_parameters, model_size)
        rank_zero_only(print)(self.line)


def summary_line(
    model_name: str,
    summary_data: list[tuple[str, list[str]]],
    total_parameters: int,
    trainable_parameters: int,
    model_size: float,
) -> str:
    """The one line (see :class:`ParameterSummary`) from Lightning's summary columns and totals."""
    from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

    columns = dict(summary_data)
    rows = zip(columns.get(NAME_COLUMN, []), columns.get(TYPE_COLUMN, []), columns.get(PARAMS_COLUMN, []))
    nets = [f"{name} {kind} {params.strip()}" for name, kind, params in rows if params.strip() != "0"]  # not metrics
    return (
        f"model: {model_name}"
        + (f" - {', '.join(nets)}" if nets else "")
        + f"; {get_human_readable_count(trainable_parameters).strip()} trainable, "
        f"{get_human_readable_count(total_parameters).strip()} parameters in all ({model_size:.1f} MB)"
    )
