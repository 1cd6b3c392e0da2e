"""Fidelity expectations for Great Expectations: synthetic rows compared with real ones.

GX Core 1.x has no KS, association or propensity expectation, so these are proper custom
ones: a metric provider per measure and an expectation per check, registered with GX when
this module is imported, listed in results under their own names and rendered in Data Docs.

They run on one batch holding both tables: the real rows and the synthetic rows stacked,
with a ``SIDE`` column saying which is which. The real rows never enter an expectation's
configuration (the suite holds only column names, thresholds and the public schema), and
every metric is an aggregate, so a result carries numbers, never a real value.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.execution_engine import ExecutionEngine, PandasExecutionEngine
from great_expectations.expectations.expectation import (
    BatchExpectation,
    render_suite_parameter_string,
)
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.table_metric_provider import (
    TableMetricProvider,
)
from great_expectations.render import LegacyRendererType, RenderedStringTemplateContent
from great_expectations.render.renderer.renderer import renderer
from great_expectations.render.renderer_configuration import (
    RendererConfiguration,
    RendererValueType,
)

from schemas import schema_from_dict
from synth import metrics
from synth.encoding import TableEncoder

SIDE = "__side__"  # the batch column marking each row "real" or "synthetic"
BINS = 20  # numeric columns in at most 20 fixed bins from the declared bounds


def split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stacked batch as (real rows, synthetic rows), without the marker column."""
    real = df[df[SIDE] == "real"].drop(columns=[SIDE])
    synthetic = df[df[SIDE] == "synthetic"].drop(columns=[SIDE])
    return real, synthetic


class _SidesMetric(TableMetricProvider):
    """A metric of the two stacked tables; subclasses define ``measure``."""

    @classmethod
    def measure(cls, real: pd.DataFrame, synthetic: pd.DataFrame, **kwargs) -> float:
        raise NotImplementedError

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine: ExecutionEngine, metric_domain_kwargs: dict,
                metric_value_kwargs: dict, metrics: dict[str, Any], runtime_configuration: dict):
        df, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs,
                                                       domain_type=MetricDomainTypes.TABLE)
        real, synthetic = split(df)
        return cls.measure(real, synthetic, **metric_value_kwargs)


class ColumnKsDistance(_SidesMetric):
    metric_name = "fidelity.column_ks_distance"
    value_keys = ("column",)

    @classmethod
    def measure(cls, real, synthetic, column, **_):
        return metrics.ks_distance(real[column], synthetic[column])


class ColumnTvDistance(_SidesMetric):
    metric_name = "fidelity.column_tv_distance"
    value_keys = ("column",)

    @classmethod
    def measure(cls, real, synthetic, column, **_):
        return metrics.tv_distance(real[column], synthetic[column])


class AssociationDifference(_SidesMetric):
    metric_name = "fidelity.association_difference"
    value_keys = ("table_schema",)

    @classmethod
    def measure(cls, real, synthetic, table_schema, **_):
        binning = TableEncoder(schema_from_dict(table_schema), max_bins=BINS)
        return metrics.association_difference(binning.encode(real), binning.encode(synthetic),
                                              binning.sizes)["mean"]


class PropensityMse(_SidesMetric):
    metric_name = "fidelity.propensity_mse"
    value_keys = ()

    @classmethod
    def measure(cls, real, synthetic, **_):
        return metrics.propensity(real, synthetic)["pmse"]


class TstrScore(_SidesMetric):
    metric_name = "fidelity.tstr_score"
    value_keys = ("target",)

    @classmethod
    def measure(cls, real, synthetic, target, **_):
        return metrics.tstr_score(synthetic, real, target)


class _FidelityExpectation(BatchExpectation):
    """A bound on one fidelity metric of the stacked real and synthetic rows."""

    threshold: float
    metric: ClassVar[str]
    upper: ClassVar[bool] = True  # True: the metric must stay below the threshold
    what: ClassVar[str]  # the rendered sentence, with $threshold (and $column / $target)

    library_metadata: ClassVar[dict] = {"maturity": "production", "tags": ["fidelity"],
                                        "contributors": ["dp-synth"]}

    @classmethod
    def _prescriptive_template(cls, renderer_configuration: RendererConfiguration):
        """The sentence Data Docs show for this expectation (GX's atomic renderer)."""
        for name, kind in (("column", RendererValueType.STRING),
                           ("target", RendererValueType.STRING),
                           ("threshold", RendererValueType.NUMBER)):
            if name in renderer_configuration.kwargs:
                renderer_configuration.add_param(name=name, param_type=kind)
        renderer_configuration.template_str = cls.what
        return renderer_configuration

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    @render_suite_parameter_string
    def _prescriptive_renderer(cls, configuration=None, result=None, runtime_configuration=None,
                               **kwargs):
        """The same sentence for GX's legacy (Data Docs page) renderer."""
        params = dict(configuration.kwargs) if configuration else {}
        styling = (runtime_configuration or {}).get("styling", {})
        return [RenderedStringTemplateContent(
            content_block_type="string_template",
            string_template={"template": cls.what, "params": params, "styling": styling})]

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None,
                  execution_engine: ExecutionEngine | None = None):
        value = metrics[self.metric]
        ok = value <= self.threshold if self.upper else value >= self.threshold
        # A python bool: GX 1.24 cannot serialise numpy's (STACK-NOTES 2.4).
        return {"success": bool(ok), "result": {"observed_value": float(value)}}


class ExpectColumnKsDistanceToBeAtMost(_FidelityExpectation):
    """The Kolmogorov-Smirnov distance between the real and synthetic values of a numeric
    or temporal column is at most ``threshold``."""

    column: str
    metric: ClassVar[str] = ColumnKsDistance.metric_name
    metric_dependencies: ClassVar[tuple[str, ...]] = (metric,)
    success_keys: ClassVar[tuple[str, ...]] = ("column", "threshold")
    args_keys: ClassVar[tuple[str, ...]] = ("column", "threshold")
    what: ClassVar[str] = ("$column: Kolmogorov-Smirnov distance between real and synthetic "
                           "values at most $threshold")


class ExpectColumnTvDistanceToBeAtMost(_FidelityExpectation):
    """The total variation distance between the real and synthetic frequencies of a
    categorical or boolean column (missing values as one more value) is at most ``threshold``."""

    column: str
    metric: ClassVar[str] = ColumnTvDistance.metric_name
    metric_dependencies: ClassVar[tuple[str, ...]] = (metric,)
    success_keys: ClassVar[tuple[str, ...]] = ("column", "threshold")
    args_keys: ClassVar[tuple[str, ...]] = ("column", "threshold")
    what: ClassVar[str] = ("$column: total variation distance between real and synthetic "
                           "frequencies at most $threshold")


class ExpectTableAssociationDifferenceToBeAtMost(_FidelityExpectation):
    """The mean absolute difference between the real and synthetic association matrices
    (Cramer's V between every pair of columns, numeric ones in fixed bins from the schema's
    bounds) is at most ``threshold``."""

    table_schema: dict
    metric: ClassVar[str] = AssociationDifference.metric_name
    metric_dependencies: ClassVar[tuple[str, ...]] = (metric,)
    success_keys: ClassVar[tuple[str, ...]] = ("table_schema", "threshold")
    args_keys: ClassVar[tuple[str, ...]] = ("threshold",)
    what: ClassVar[str] = ("mean absolute difference of the real and synthetic association "
                           "matrices (Cramer's V) at most $threshold")


class ExpectTablePropensityMseToBeAtMost(_FidelityExpectation):
    """A classifier telling real rows from synthetic ones does little better than chance:
    its propensity mean squared error (0 = indistinguishable, 0.25 = fully separable) is at
    most ``threshold``."""

    metric: ClassVar[str] = PropensityMse.metric_name
    metric_dependencies: ClassVar[tuple[str, ...]] = (metric,)
    success_keys: ClassVar[tuple[str, ...]] = ("threshold",)
    args_keys: ClassVar[tuple[str, ...]] = ("threshold",)
    what: ClassVar[str] = ("a real-vs-synthetic classifier's propensity MSE at most "
                           "$threshold (0 = indistinguishable)")


class ExpectTableTstrScoreToBeAtLeast(_FidelityExpectation):
    """A model of ``target`` trained on the synthetic rows scores at least ``threshold`` on
    the real rows (AUROC for a categorical target, R^2 for a numeric one)."""

    target: str
    metric: ClassVar[str] = TstrScore.metric_name
    upper: ClassVar[bool] = False
    metric_dependencies: ClassVar[tuple[str, ...]] = (metric,)
    success_keys: ClassVar[tuple[str, ...]] = ("target", "threshold")
    args_keys: ClassVar[tuple[str, ...]] = ("target", "threshold")
    what: ClassVar[str] = ("a model of $target trained on synthetic rows scores at least "
                           "$threshold on real rows (AUROC, or R^2 for a number)")
