"""Beam's DaskRunner, corrected where the index build needs it to be: a pipeline on a
`dask.distributed` cluster, each step a Dask Bag operation on the workers.

Beam 2.77's own DaskRunner (apache_beam.runners.dask) translates a pipeline into Dask Bags, but
as released it cannot run this build correctly:

- a step's outputs are collected in one list created when the graph is built, shared by every
  partition a worker process runs, so elements come out repeated;
- what a step emits when its bundle finishes is dropped (taken before `finish_bundle` runs);
- side inputs are computed inside each task that reads them, by a nested compute of their
  whole upstream graph (the catalog embedded again for every reader);
- only the graph of the last transform is computed: another branch that ends elsewhere never runs.

Here each bundle gets its own receivers and returns after `finish_bundle`; a side input is a
dependency of the tasks that read it (`Bag.to_delayed`), computed once in the same graph as
everything else; and every leaf is computed. The rest (Create, GroupByKey, Flatten, and
Reshuffle as a no-op) is Beam's translation. Elements spread over the workers by the partitions
of `Create`: one element per partition unless `--dask_npartitions` or `--dask_partition_size`
says otherwise, so that each catalog part (a file, a Parquet row group) is read and embedded
on its own partition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import dask
import dask.bag as db
from apache_beam import DoFn, pvalue
from apache_beam.pipeline import AppliedPTransform, Pipeline, PipelineVisitor
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, _OutputHandler
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask import transform_evaluator as beam_ops
from apache_beam.runners.dask.overrides import dask_overrides
from apache_beam.transforms.sideinputs import SideInputMap
from dask.delayed import Delayed
from distributed import Client

DaskOptions = beam_dask.DaskOptions


def _run_bundle(items: Iterable[Any], fn: DoFn, label: str, window_fn: Any, args: list[Any],
                kwargs: dict[str, Any], side_views: Sequence[tuple[Any, dict[str, Any]]],
                *side_values: list[Any]) -> list[Any]:
    """One partition through one DoFn, as one bundle, with receivers of its own."""
    receivers = beam_ops.OneReceiver()
    side_inputs = [SideInputMap(view, options, [beam_ops.get_windowed_value(v, window_fn) for v in values])
                   for (view, options), values in zip(side_views, side_values)]
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(fn),
        _OutputHandler(window_fn=window_fn, main_receivers=receivers[None], tagged_receivers=receivers,
                       per_element_output_counter=None, output_batch_converter=None,
                       process_yields_batches=False, process_batch_yields_elements=False),
        context=DoFnContext(label, state=None), side_inputs=side_inputs, input_args=args,
        input_kwargs=kwargs, user_state_context=None, bundle_finalizer_param=DoFn.BundleFinalizerParam())
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()
    invoker.invoke_teardown()
    return [value.value for value in receivers.values]


def _concatenated(partitions: list[list[Any]]) -> list[Any]:
    return [item for partition in partitions for item in partition]


@dataclasses.dataclass
class _Translation(PipelineVisitor):
    """Every leaf transform's Dask Bag, and which of them nothing consumes."""

    bag_kwargs: dict[str, Any]
    bags: dict[AppliedPTransform, db.Bag] = dataclasses.field(default_factory=dict)
    consumed: set[AppliedPTransform] = dataclasses.field(default_factory=set)

    def visit_transform(self, node: AppliedPTransform) -> None:
        inputs = [self.bags[i.producer] for i in node.inputs
                  if not isinstance(i, pvalue.PBegin) and i.producer in self.bags]
        self.consumed.update(i.producer for i in node.inputs if not isinstance(i, pvalue.PBegin))
        self.consumed.update(s.pvalue.producer for s in node.side_inputs)
        operation: Any = beam_ops.TRANSLATIONS.get(node.transform.__class__, beam_ops.NoOp)
        if operation is beam_ops.ParDo:
            self.bags[node] = self._pardo(node, inputs[0])
        elif operation is beam_ops.Flatten:
            self.bags[node] = operation(node, bag_kwargs=self.bag_kwargs).apply(inputs)
        else:
            self.bags[node] = operation(node, bag_kwargs=self.bag_kwargs).apply(inputs[0] if inputs else None)

    def _pardo(self, node: AppliedPTransform, bag: db.Bag) -> db.Bag:
        transform: Any = node.transform
        args, kwargs = transform.raw_side_inputs
        main_input = next(iter(node.main_inputs.values()))
        window_fn = main_input.windowing.windowfn if hasattr(main_input, "windowing") else None
        views = [(type(s), s._view_options()) for s in node.side_inputs]
        values: list[Delayed] = [
            dask.delayed(_concatenated)(self.bags[s.pvalue.producer].to_delayed(optimize_graph=False))
            for s in node.side_inputs]
        return bag.map(beam_ops.get_windowed_value, window_fn).map_partitions(
            _run_bundle, transform.fn, transform.label, window_fn, list(args), kwargs, views, *values)

    def leaves(self) -> list[db.Bag]:
        return [bag for node, bag in self.bags.items() if node not in self.consumed and bag is not None]


class DaskRunner(beam_dask.DaskRunner):
    """Runs a pipeline on the dask.distributed scheduler that `--dask_client_address` names."""

    def run_pipeline(self, pipeline: Pipeline, options: Any) -> beam_dask.DaskRunnerResult:
        dask_options = options.view_as(DaskOptions).get_all_options(drop_default=True, current_only=True)
        bag_kwargs = DaskOptions._extract_bag_kwargs(dask_options) or {"partition_size": 1}
        client = Client(**dask_options)
        pipeline.replace_all(dask_overrides())
        translation = _Translation(bag_kwargs)
        pipeline.visit(translation)
        return _Result(client, client.compute(translation.leaves()))


class _Result(beam_dask.DaskRunnerResult):
    """Beam's result, which also closes its client when the pipeline ends."""

    def wait_until_finish(self, duration: int | None = None) -> str:
        try:
            return super().wait_until_finish(duration)
        finally:
            self.client.close()
