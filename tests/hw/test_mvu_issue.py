"""The MVU's issue and output credits (:mod:`lcp.hw.mvu`).

The pipeline behind the issue never stalls: an output's last step issues only when the output
queue has room for its result. So the engine's ``i_stream.ready`` must not depend on its
``o_stream.ready`` in the same cycle (no combinational path from the consumer back to the
producer, the ECP5 critical path of the stalling design), and a consumer that refuses beats
for a long time must lose none, also with a queue deeper than one beat.
"""

import numpy as np
from amaranth.sim import Simulator

from lcp.golden import Golden
from lcp.hw.folding import Folding
from lcp.hw.graph import lower_branch

from tests.hw.amsim import simulate_graph
from tests.hw.test_engines import chain_model


def _model():
    m, (c, d0, d1) = chain_model()
    # conv: 18 inputs in 9 steps (one output register); dense0: all 144 inputs in one step
    # (a queue of latency + 1 beats); dense1: two steps, pipelined
    fold = Folding({c: {"pe": 2, "simd": 2, "tree_k": 1}, d0: {"pe": 3, "simd": 144},
                    d1: {"pe": 2, "simd": 3, "tree_k": 1}}, 32, 8)
    return m, fold


def test_issue_does_not_wait_for_output_ready_in_the_same_cycle():
    m, fold = _model()
    g = lower_branch(m, 0, fold)
    engines = [n.plan for n in g.nodes if hasattr(n.plan, "mvu")]
    assert len(engines) == 3
    assert {p.mvu.out_depth > 1 for p in engines} == {True, False}
    rng = np.random.default_rng(0)
    for plan in engines:
        eng = plan.build()
        i, o = eng.i_stream, eng.o_stream
        width = len(i.payload.as_value())
        checked = []

        async def bench(ctx):
            for _ in range(300):
                ctx.set(i.valid, int(rng.random() < 0.7))
                ctx.set(i.payload.as_value(), int(rng.integers(0, 1 << min(width, 62))))
                ctx.set(o.ready, 0)
                r0 = ctx.get(i.ready)
                ctx.set(o.ready, 1)
                r1 = ctx.get(i.ready)
                assert r0 == r1, f"{plan.layer.name}: i_stream.ready follows o_stream.ready"
                checked.append(r0)
                ctx.set(o.ready, int(rng.random() < 0.3))
                await ctx.tick()

        sim = Simulator(eng)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
        # the engine took inputs and also stopped taking them (its credits ran out)
        assert 0 < sum(checked) < len(checked)


def test_long_back_pressure_loses_no_beat():
    m, fold = _model()
    g = lower_branch(m, 0, fold)
    rng = np.random.default_rng(1)
    xq = rng.integers(0, 256, size=(3, 2, 6, 6))
    want = Golden(m).run_branch(0, xq)
    got, _ = simulate_graph(g, xq, sink_pause=[1] * 40 + [0, 0, 1, 0])
    np.testing.assert_array_equal(got, want)
