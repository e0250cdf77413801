"""Search spaces. ``cell``: the DARTS/SNAS cell space (supernet, children, evaluation nets)."""

from kerasnas.search_spaces.cell import CellSpace, build_network, inherit_weights, reduction_cells

__all__ = ["CellSpace", "build_network", "inherit_weights", "reduction_cells"]
