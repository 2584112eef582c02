"""Poison-filtering defences on representations or loss trajectories.

``FILTERS`` maps spec names to filter classes; each is built as ``cls(**params)`` (with a
``removal`` budget, a multiple of the expected poison count, default 1.5 as Tran et al.),
declares ``needs`` (``{"features"}`` or ``{"losses"}``) and returns one
:class:`FilterResult` from ``fit_predict(FilterInputs)``. Features come from
:func:`attacks.filters.representations.penultimate`; scores are judged by
:func:`attacks.filters.metrics.filter_metrics`.
"""

from ..contracts import FILTERS  # each class registers itself where it is defined
from .activation_clustering import ActivationClustering
from .art_adapter import ArtActivation, ArtSpectral
from .base import FilterInputs, FilterResult, removal_budget
from .knn import KNN
from .loss_trajectory import LossTrajectory
from .spectral import Spectral

__all__ = ["FILTERS", "FilterInputs", "FilterResult", "removal_budget", "Spectral",
           "ActivationClustering", "LossTrajectory", "KNN", "ArtSpectral", "ArtActivation"]
