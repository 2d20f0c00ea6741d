"""Rotations of a model's activation spaces (QuaRot / SpinQuant-style incoherence processing).

``hadamard``: Hadamard matrices (Sylvester, Paley I/II, Kronecker products) and random orthogonal
matrices; ``online``: a module that applies a (Kronecker-factored) rotation to activations at run
time; ``transform``: the offline, function-preserving rotation of a whole model; ``cayley``: a
learnable orthogonal matrix. Kept free of calibration imports: ``abqlab.quant`` may import it.
"""
