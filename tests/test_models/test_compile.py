"""torch.compile sees the whole backbone as one graph: no call in the
forward that it cannot trace (a graph break splits the compiled model and
puts Python back between the pieces; on a GPU at small batches that time
shows in the latency)."""
import pytest
import torch

from mmnextvit.models import NextViT


@pytest.mark.parametrize('deploy, training, autocast', [
    (True, False, False),  # the deployed inference path
    (True, False, True),  # the same under CPU bf16 autocast
    (False, True, False),  # training, with autograd
])
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
