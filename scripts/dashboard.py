#!/usr/bin/env python3
"""The standard wandb views of a project, as code: `make wandb-dashboard ENTITY=... PROFILE=quick`.

    python scripts/dashboard.py --entity ENTITY [--project bnexp] [--profile quick] [--save]

Builds one workspace with a section per view (wandb-workspaces):
  claims                      the report run's claims table (verdict, effect, interval, version, status)
  learning rate               final test accuracy against lr, one colour per norm (lr_tolerance)
  small batch                 test accuracy against images per BN statistic, per norm (small_batch)
  gradients                   per-layer gradient norms over training (gradient_flow), log scale
  training curves             train loss and test accuracy by step, grouped by run group
restricted to the runs tagged `profile:<profile>`. Without --save it prints what it would save
(saving needs a server and a login); with --save it saves and prints the workspace's URL.
"""

from __future__ import annotations

import argparse

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws


def workspace(entity: str, project: str, profile: str) -> ws.Workspace:
    acc = wr.SummaryMetric("test_acc")
    sections = [
        ws.Section(name="claims", is_open=True, panels=[
            wr.WeavePanelSummaryTable(table_name="claims")]),
        ws.Section(name="learning rate", is_open=True, panels=[
            wr.ScatterPlot(title="final test accuracy vs learning rate (lr_tolerance probes)",
                           x=wr.Config("optim.lr"), y=acc, log_x=True),
            wr.ScatterPlot(title="recalibrated BN statistics", x=wr.Config("optim.lr"),
                           y=wr.SummaryMetric("test_recal_acc"), log_x=True)]),
        ws.Section(name="small batch", is_open=True, panels=[
            wr.ScatterPlot(title="test accuracy vs images per BN statistic (small_batch)",
                           x=wr.Config("model.virtual_batch"), y=acc, log_x=True)]),
        ws.Section(name="gradients", panels=[
            wr.LinePlot(title="per-layer gradient norm (gradient_flow)", x="Step", metric_regex="grad_norm/.*",
                        log_y=True),
            wr.LinePlot(title="global gradient norm", x="Step", y=["grad_norm"], log_y=True,
                        groupby="group")]),
        ws.Section(name="training curves", panels=[
            wr.LinePlot(title="train loss", x="Step", y=["train/loss"], groupby="group"),
            wr.LinePlot(title="test accuracy", x="Step", y=["test/acc"], groupby="group")]),
    ]
    return ws.Workspace(
        entity=entity, project=project, name=f"bnexp {profile}", sections=sections,
        runset_settings=ws.RunsetSettings(filters=[ws.Tags().isin([f"profile:{profile}"])],
                                          groupby=[ws.Metric("Group")]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entity", required=True)
    p.add_argument("--project", default="bnexp")
    p.add_argument("--profile", default="quick")
    p.add_argument("--save", action="store_true", help="save it to the server (needs a login)")
    a = p.parse_args()
    w = workspace(a.entity, a.project, a.profile)
    if not a.save:
        for s in w.sections:
            print(f"{s.name}: " + "; ".join(type(x).__name__ + (f" '{x.title}'" if getattr(x, "title", None) else "")
                                            for x in s.panels))
        return
    print(w.save().url)


if __name__ == "__main__":
    main()
