"""`lsdctl view`: a run's or a project's results in a local neuroglancer viewer.

`plan` decides what to show from disk alone (light); `viewer` starts neuroglancer
(imported only then) with the arrays served by `server`.
"""

from __future__ import annotations

from lsdctl.view.plan import Layer, ViewPlan, plan_view

__all__ = ["Layer", "ViewPlan", "plan_view"]
