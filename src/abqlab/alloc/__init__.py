"""Mixed precision: per-linear weight bits under a byte budget (``quant.budget``).

Sensitivities (``sensitivity.py``) give each linear a loss per candidate width; an allocator
from ``ALLOCATORS`` picks the widths (``quant.layer_bits``) whose storage fits the budget; the
calibration method then quantizes each linear at its width.
"""

from abqlab.registry import Registry

ALLOCATORS: Registry = Registry("bit allocator")
ALLOCATORS.register("knapsack", "abqlab.alloc.knapsack:solve_knapsack")
ALLOCATORS.register("greedy", "abqlab.alloc.greedy:solve_greedy")
ALLOCATORS.register("learned", "abqlab.alloc.learned:solve_learned")
ALLOCATORS.register("search", "abqlab.alloc.search:solve_search")
