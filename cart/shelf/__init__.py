"""Shelf-weight inference: plate weight readings + planogram -> picks, put-backs, review items.

Modules: :mod:`~cart.shelf.planogram` (which product sits on which plates),
:mod:`~cart.shelf.weights` (plate readings and per-shelf weight arrays),
:mod:`~cart.shelf.detect` (stable weight changes), :mod:`~cart.shelf.explain` (product
combinations within tolerance), :mod:`~cart.shelf.inference` (the pipeline),
:mod:`~cart.shelf.review` (review items), :mod:`~cart.shelf.evaluation` (receipts and
precision / recall), :mod:`~cart.shelf.simulate` (seeded plate streams from ground truth),
:mod:`~cart.shelf.aifi` (loader of the AiFi AutoCheckout ground truth, given a path) and
:mod:`~cart.shelf.twins` (true units that weight cannot tell from another product).
"""
