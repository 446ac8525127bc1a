"""Which edges and nodes of a trained KAN matter, and pruning the rest (KAN paper §2.5.1).

An edge's score is its mean magnitude |phi|_1 = mean_s |phi(x_s)| over samples (the training
points); a hidden node's incoming score is the largest score of the edges into it, its outgoing
score the largest of the edges out of it.  Pruning drops the edges scoring below a threshold, then
every hidden node left without an incoming or an outgoing edge, and rebuilds the layers narrower.
"""
from __future__ import annotations

import copy

import torch

from kanpde.models.kan import KAN
from kanpde.interpret.network import kan_of


@torch.no_grad()
def edge_scores(model: KAN, x: torch.Tensor) -> list[torch.Tensor]:
    """Per layer (width[l], width[l+1]): mean |phi_{i->o}| over the samples x: (batch, width[0]); pruned edges score 0."""
    return kan_of(model).edge_sizes(x)


def node_scores(model: KAN, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per hidden layer, (incoming, outgoing) scores of its nodes, each (width[l],): the paper's
    I = max over edges into the node, O = max over edges out of it."""
    scores = edge_scores(model, x)
    return [(scores[l - 1].amax(0), scores[l].amax(1)) for l in range(1, len(scores))]


def _alive(net: KAN) -> list[torch.Tensor]:
    """Per layer (in, out) booleans on the CPU: edges that are not pruned."""
    out = []
    for layer in net.layers:
        alive = (layer.mask > 0).cpu()
        if layer.symbolic is not None:
            alive = alive | torch.tensor([[n not in (None, "0") for n in row] for row in layer.symbolic.names])
        out.append(alive)
    return out


@torch.no_grad()
def prune(model: KAN, x: torch.Tensor | None, threshold: float = 1e-2, inplace: bool = False,
          scores: list[torch.Tensor] | None = None) -> KAN:
    """The KAN without its edges scoring below ``threshold`` on x: (batch, width[0]), nor the hidden nodes
    those leave without an incoming or an outgoing edge; narrower layers (new ``width``).

    What remains computes the same function as before minus the dropped edges.  With ``inplace`` the
    model itself changes (rebuild its optimiser after); otherwise a pruned copy is returned.  A
    threshold that would leave a hidden layer empty fails before anything changes.  ``scores``: the
    edges' scores given (data-parallel training: over all ranks' points) instead of taken on x.
    """
    if not threshold >= 0:
        raise ValueError(f"prune threshold must be >= 0, got {threshold}")
    net = kan_of(model)
    scores = edge_scores(net, x) if scores is None else scores
    alive = [a & (s.cpu() >= threshold) for a, s in zip(_alive(net), scores)]
    keep = [torch.ones(w, dtype=torch.bool) for w in net.width]
    changed = True
    while changed:  # dropping a node can leave a node of the next or previous layer without edges
        changed = False
        for l in range(1, len(net.width) - 1):
            has_in = (alive[l - 1] & keep[l - 1][:, None]).any(0)
            has_out = (alive[l] & keep[l + 1][None, :]).any(1)
            now = keep[l] & has_in & has_out
            if not bool(now.any()):
                raise ValueError(f"pruning at threshold {threshold} removes every node of hidden layer {l}; lower the threshold")
            changed |= not torch.equal(now, keep[l])
            keep[l] = now
    if not inplace:
        net = copy.deepcopy(net)
    for layer, was, now in zip(net.layers, _alive(net), alive):
        for i, o in (was & ~now).nonzero().tolist():
            layer.remove_edge(i, o)
    net.keep_nodes([k.nonzero().flatten() for k in keep[1:-1]])
    return net
