"""Performance-estimation strategies for trial-based search (the NAS survey's third part):
ways to score a trial's architecture more cheaply than training it to the end.

- :mod:`~kerasnas.estimation.base`: :class:`Estimator`, what it gets
  (:class:`TrialContext`) and returns (:class:`Estimate`); :class:`FullTraining`.
- :mod:`~kerasnas.estimation.proxy`: lower fidelity (fewer epochs, part of the data).
- :mod:`~kerasnas.estimation.lc`: learning-curve extrapolation with early stopping
  (Domhan, Springenberg and Hutter, 2015), on the curve model of
  :mod:`~kerasnas.estimation.curves` (numpy only).
- :mod:`~kerasnas.estimation.morphism`: function-preserving network morphisms and the
  weights a child inherits: the ``nasrl`` space (widen, deepen, skip, kernel), ``metaqnn``
  (:mod:`~kerasnas.estimation.morphism_metaqnn`: widen, deepen, kernel) and ``cell``
  (:mod:`~kerasnas.estimation.morphism_cell`: kernel growth of an edge's op).
- :mod:`~kerasnas.estimation.inheritance`: children of morphisms inherit their trained
  parent's weights and train briefly (NASH, LEMONADE; ``--estimator=morphism``,
  ``--morphism_epochs``), the lineage carried in the trial's hyperparameter values.
- :mod:`~kerasnas.estimation.hypernet`: a SMASH-style hypernetwork of the ``nasrl`` space
  (Brock et al. 2018), trained once on sampled architectures, that scores every trial with
  generated weights (imports TensorFlow; loaded only when chosen).
- :mod:`~kerasnas.estimation.settings`: the ``kerasnas-search`` flags that choose one.

A trial-based search takes one (``ArchTuner(..., estimator=...)``, ``--estimator``); the
oracles are unchanged. None of these modules but ``hypernet`` imports TensorFlow itself.
"""

from kerasnas.estimation.base import Estimate, Estimator, FullTraining, TrialContext

__all__ = ["Estimate", "Estimator", "FullTraining", "TrialContext"]
