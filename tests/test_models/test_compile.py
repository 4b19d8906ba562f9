"""torch.compile sees the whole backbone as one graph: no call in the
forward that it cannot trace (a graph break splits the compiled model and
puts Python back between the pieces; on a GPU at small batches that time
shows in the latency). Checked on today's stack: torch 2.1's dynamo cannot
trace identity tests between tensors (``y is not x``) or
``Tensor.element_size()`` of the inference path, and splits it into pieces
there (it still compiles and runs)."""
import pytest
import torch

from mmnextvit.compat.torch import torch_at_least
from mmnextvit.models import NextViT


@pytest.mark.parametrize('deploy, training, autocast', [
    (True, False, False),  # the deployed inference path
    (True, False, True),  # the same under CPU bf16 autocast
    (False, True, False),  # training, with autograd
])
@pytest.mark.skipif(
    not torch_at_least(2, 2),
    reason="torch 2.1's dynamo breaks the graph at identity tests between "
    'tensors and Tensor.element_size(); one graph is checked on torch 2.13')
def test_one_graph(deploy, training, autocast):
    model = NextViT(arch='small', deploy=deploy).train(training)
    torch._dynamo.reset()
    with torch.set_grad_enabled(training), torch.autocast(
            'cpu', dtype=torch.bfloat16, enabled=autocast):
        explained = torch._dynamo.explain(model)(torch.rand(1, 3, 64, 64))
    assert explained.graph_break_count == 0, [
        str(b.reason).splitlines()[0] for b in explained.break_reasons
    ]
    assert explained.graph_count == 1
