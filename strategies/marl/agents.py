"""The learned agents on the bus: Features in, AgentAction out.

Each :class:`LearnedAgent` holds its policy exported once to float64 arrays
(:class:`NumpyPolicy`: the same arithmetic as :class:`~strategies.marl.networks.PolicyNet`
in ``eval()`` mode: no autograd, no dropout, preallocated buffers; one numba call per
decision runs the normalisation, the MLP, the agent's logit terms and the softmax) and, on every
``Features`` event whose ``warm`` flag is set, publishes one
:class:`~engine.core.events.AgentAction`:

* ``action``: argmax of the policy (``deterministic``, the default) or a draw with the
  run's seeded generator from SPEC 3's temperature-scaled distribution
  softmax(logits / τ_adaptive), τ_adaptive = τ_base (1 + bonus · H(π) / log 3): the
  policy's normalised entropy is the uncertainty, so an unsure agent explores more.
  With τ_base = 1 and bonus = 0 (the defaults) the draw is from π itself. Since
  π = softmax(logits), softmax(logits / τ) = π^(1/τ) / Σ π^(1/τ);
* ``bearish`` / ``neutral`` / ``bullish``: the vote the ensemble averages. With
  ``vote = "action"`` (default) it is the one-hot vector of the action, exactly the
  vote the training environment used; with ``vote = "probabilities"`` the policy's
  distribution;
* ``confidence``: max π - H(π) of the policy's distribution (SPEC 3).

On a bar whose features are not warm the agents publish nothing, so the
meta-investor makes no decision and nothing trades on that bar.

:func:`engine.app.kernel.build_kernel` wires the feature engine, the three agents (as
one :class:`AgentPanel`), the meta-investor (SPEC 3 gate and sizing, SPEC 5 weights) and
the executor.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from operator import attrgetter

import numpy as np
import torch
from numba import njit

from engine.core.bus import Bus
from engine.core.clock import Clock
from engine.core.events import Features
from strategies.base import Agent
from strategies.marl.networks import NWRQK_MAX_DISTANCE, PolicyNet
from strategies.meta.decision import entropy_nb

log = logging.getLogger("emarl.agents")

__all__ = ["AgentPanel", "LearnedAgent", "NumpyPolicy"]

_SLICE_FIELD = {"mlmi": "mlmi", "nwrqk": "nwrqk", "regime": "regime"}


@njit(cache=True)
def _dense_nb(h, w, b, out, relu):
    """out = h @ w + b (w is (in, out), C order), then ReLU when ``relu``.

    Each out[j] is summed in the order b[j] + h[0] w[0, j] + h[1] w[1, j] + ...
    Inputs that are exactly 0 (about half of them after a ReLU) are skipped: their
    terms are zeros, and adding a zero leaves a sum unchanged (up to the sign of an
    exact zero, which no later step can tell apart), so the result is the same. The sums
    run in a small local array that cannot alias ``w``, which lets the compiler vectorise
    the loop over j (about twice as fast as accumulating in ``out`` directly).

    The rows with a nonzero input are listed first, without a branch, and then taken two
    at a time, acc[j] = (acc[j] + h_a w_a[j]) + h_b w_b[j]: still one term after the
    other in the order of i, so the same floats, with half the passes over ``acc`` and no
    mispredicted branch between rows (measured in a backtest: the three policies took
    about 11 µs a bar instead of 13.4).
    """
    m = out.shape[0]
    acc = np.empty(m)  # float64, whatever the dtype of w
    rows = np.empty(h.shape[0], dtype=np.int64)
    count = 0
    for i in range(h.shape[0]):  # the rows with a nonzero input, without a branch
        rows[count] = i
        count += h[i] != 0.0
    for j in range(m):
        acc[j] = b[j]
    k = 0
    while k + 2 <= count:
        h0 = h[rows[k]]
        h1 = h[rows[k + 1]]
        w0 = w[rows[k]]
        w1 = w[rows[k + 1]]
        for j in range(m):
            acc[j] = (acc[j] + h0 * w0[j]) + h1 * w1[j]
        k += 2
    while k < count:
        hi = h[rows[k]]
        wi = w[rows[k]]
        for j in range(m):
            acc[j] += hi * wi[j]
        k += 1
    for j in range(m):
        out[j] = acc[j]
    if relu:
        for j in range(out.shape[0]):
            if out[j] < 0.0:
                out[j] = 0.0


@njit(cache=True)
def _forward_nb(x, mean, std, clip, w0, b0, w1, b1, w2, b2, w3, b3, z, h0, h1, h2, out):
    """Normalise, clip and run the four layers of a policy MLP into ``out`` (raw logits)."""
    for i in range(x.shape[0]):
        v = (x[i] - mean[i]) / std[i]
        z[i] = min(max(v, -clip), clip)
    _dense_nb(z, w0, b0, h0, True)
    _dense_nb(h0, w1, b1, h1, True)
    _dense_nb(h1, w2, b2, h2, True)
    _dense_nb(h2, w3, b3, out, False)


PLAIN, NWRQK_PRIOR, REGIME_SCALE = 0, 1, 2


@njit(cache=True)
def _take_nb(buffer, at, size):
    """The next ``size`` values of ``buffer`` from ``at``, and where the next part starts."""
    return buffer[at : at + size], at + size


# scalar slots at the start of a policy's parameter buffer
_P_CLIP, _P_TEMPERATURE, _P_VOLATILITY_REFERENCE, _P_HEAD = 0, 1, 2, 3
_P_SCALARS = 4


@njit(cache=True)
def _policy_nb(x, params, weights, layout, work):
    """One decision: tempered logits, then softmax into the probability slots of ``work``.

    ``params`` (float64) holds, one after the other, the scalars (clip, temperature,
    volatility reference, head), mean, std, beta and each layer's bias; ``weights``
    (float32, exactly the trained values) each layer's weights ((in, out), C order);
    ``layout`` the layer sizes (see :class:`NumpyPolicy`); ``work`` the
    normalised input, the three hidden layers, the logits and the probabilities.
    ``head`` selects the agent's extra logit terms (PLAIN, NWRQK_PRIOR, REGIME_SCALE).
    The softmax is exp(l - max l) / ((e0 + e1) + e2), the operations and the order of
    numpy's ``e = np.exp(l - l.max()); e / e.sum()``, so it gives the same floats.
    """
    n_in, h0_n, h1_n, h2_n = layout[0], layout[1], layout[2], layout[3]
    mean, at = _take_nb(params, _P_SCALARS, n_in)
    std, at = _take_nb(params, at, n_in)
    beta, at = _take_nb(params, at, 3)
    b0, at = _take_nb(params, at, h0_n)
    b1, at = _take_nb(params, at, h1_n)
    b2, at = _take_nb(params, at, h2_n)
    b3, at = _take_nb(params, at, 3)
    w0, at = _take_nb(weights, 0, n_in * h0_n)
    w1, at = _take_nb(weights, at, h0_n * h1_n)
    w2, at = _take_nb(weights, at, h1_n * h2_n)
    w3, at = _take_nb(weights, at, h2_n * 3)
    z, at = _take_nb(work, 0, n_in)
    h0, at = _take_nb(work, at, h0_n)
    h1, at = _take_nb(work, at, h1_n)
    h2, at = _take_nb(work, at, h2_n)
    logits, at = _take_nb(work, at, 3)
    probabilities, at = _take_nb(work, at, 3)
    w0 = w0.reshape((n_in, h0_n))
    w1 = w1.reshape((h0_n, h1_n))
    w2 = w2.reshape((h1_n, h2_n))
    w3 = w3.reshape((h2_n, 3))
    clip = params[_P_CLIP]
    temperature = params[_P_TEMPERATURE]
    volatility_reference = params[_P_VOLATILITY_REFERENCE]
    head = int(params[_P_HEAD])
    _forward_nb(x, mean, std, clip, w0, b0, w1, b1, w2, b2, w3, b3, z, h0, h1, h2, logits)
    if head == NWRQK_PRIOR:
        slope = x[1]
        support = max(0.0, x[3] - min(abs(x[2]) / NWRQK_MAX_DISTANCE, 1.0))
        directional = beta[0] * slope + beta[1] * support
        logits[0] -= directional
        logits[1] += beta[2] / (1.0 + abs(slope))
        logits[2] += directional
    elif head == REGIME_SCALE and volatility_reference > 0.0:
        relative = max(x[1] / volatility_reference, 1e-12)
        scale = min(max(1.0 / relative, 0.5), 2.0)
        for a in range(3):
            logits[a] *= scale
    for a in range(3):
        logits[a] /= temperature
    top = max(logits[0], max(logits[1], logits[2]))
    e0 = math.exp(logits[0] - top)
    e1 = math.exp(logits[1] - top)
    e2 = math.exp(logits[2] - top)
    total = (e0 + e1) + e2
    probabilities[0] = e0 / total
    probabilities[1] = e1 / total
    probabilities[2] = e2 / total


@njit(cache=True)
def _panel_nb(x, params, weights, layout, work, at, probabilities):
    """Several policies in one call: policy ``a`` reads its input from ``x``, its
    buffers from the shared ``params`` / ``weights`` / ``work`` at the offsets of row
    ``a`` of ``at`` (input, params, weights, work), its sizes from row ``a`` of ``layout``,
    and leaves pi(. | x) in ``probabilities[4a : 4a + 3]`` (each policy exactly as
    :func:`_policy_nb` computes it alone) and its entropy in ``probabilities[4a + 3]``."""
    for a in range(at.shape[0]):
        n_in, n_params, n_weights, n_work = layout[a, 4], layout[a, 5], layout[a, 6], layout[a, 7]
        x_at, p_at, w_at, k_at = at[a, 0], at[a, 1], at[a, 2], at[a, 3]
        own = work[k_at : k_at + n_work]
        _policy_nb(
            x[x_at : x_at + n_in],
            params[p_at : p_at + n_params],
            weights[w_at : w_at + n_weights],
            layout[a, :4],
            own,
        )
        p0 = own[n_work - 3]
        p1 = own[n_work - 2]
        p2 = own[n_work - 1]
        probabilities[4 * a] = p0
        probabilities[4 * a + 1] = p1
        probabilities[4 * a + 2] = p2
        probabilities[4 * a + 3] = entropy_nb(p0, p1, p2)


class NumpyPolicy:
    """A :class:`PolicyNet` in eval mode as numpy arrays (float64)."""

    def __init__(self, policy: PolicyNet) -> None:

        self.agent = policy.agent
        with torch.no_grad():
            norm = policy.norm
            self.mean = norm.mean.double().numpy().copy()
            self.std = np.sqrt(norm.var.double().numpy() + norm.epsilon)
            self.clip = float(norm.clip)
            linears = [m for m in policy.body if isinstance(m, torch.nn.Linear)]
            self.weights = [np.ascontiguousarray(m.weight.double().numpy().T) for m in linears]
            if len(self.weights) != 4:
                raise ValueError(f"expected a 4-layer policy, got {len(self.weights)} layers")
            self.biases = [m.bias.double().numpy().copy() for m in linears]
            self.temperature = float(policy.temperature())
            self.beta = (
                policy.beta.double().numpy().copy() if policy.agent == "nwrqk" else np.zeros(3)
            )
            self.volatility_reference = float(norm.mean[1]) if float(norm.count) > 0 else math.nan
        self._head = {"nwrqk": NWRQK_PRIOR, "regime": REGIME_SCALE}.get(self.agent, PLAIN)
        w, b = self.weights, self.biases
        if w[3].shape[1] != 3:
            raise ValueError(f"expected 3 logits, got {w[3].shape[1]}")
        # A decision is one numba call on a parameter buffer, a weight buffer, a layout
        # and a work buffer. The weights are the network's float32 values, stored as
        # float32: each product is still formed and summed in float64 (float32 -> float64
        # is exact), so the results are those of float64 weights, with half the memory
        # traffic per decision.
        scalars = [self.clip, self.temperature, self.volatility_reference, float(self._head)]
        self._params = np.concatenate([np.array(scalars), self.mean, self.std, self.beta, *b])
        weights32 = np.concatenate([weight.ravel() for weight in w]).astype(np.float32)
        if not np.array_equal(weights32.astype(np.float64), np.concatenate([x.ravel() for x in w])):
            raise ValueError(f"{self.agent}: policy weights are not float32 values")
        self._weights32 = weights32
        self._layout = np.array(
            [len(self.mean), w[0].shape[1], w[1].shape[1], w[2].shape[1]], dtype=np.int64
        )
        n_work = len(self.mean) + w[0].shape[1] + w[1].shape[1] + w[2].shape[1] + 6
        self._work = np.empty(n_work)
        self._logits = self._work[n_work - 6 : n_work - 3]
        self._probabilities = self._work[n_work - 3 :]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Tempered logits for one raw input vector (returns an internal buffer)."""
        self.decide(x)
        return self._logits

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """pi(. | x) for one raw input vector (a new array)."""
        return self.decide(x).copy()

    def decide(self, x: np.ndarray) -> np.ndarray:
        """pi(. | x) for one raw input vector (float64, C order) into an internal buffer."""
        _policy_nb(x, self._params, self._weights32, self._layout, self._work)
        return self._probabilities


class LearnedAgent(Agent):
    """One agent of a checkpoint on the bus; see the module docstring."""

    def __init__(
        self,
        bus: Bus,
        clock: Clock,
        symbol: str,
        agent_index: int,
        policy: NumpyPolicy,
        *,
        agent_id: str | None = None,
        deterministic: bool = True,
        vote: str = "action",
        rng: np.random.Generator | None = None,
        sampling_temperature: float = 1.0,
        uncertainty_bonus: float = 0.0,
    ) -> None:
        if vote not in ("action", "probabilities"):
            raise ValueError(f"vote must be 'action' or 'probabilities', got {vote!r}")
        if not deterministic and rng is None:
            raise ValueError("sampling agents need a seeded rng")
        if not (sampling_temperature > 0 and math.isfinite(sampling_temperature)):
            raise ValueError(
                f"sampling_temperature must be a positive number, got {sampling_temperature!r}"
            )
        if not (uncertainty_bonus >= 0 and math.isfinite(uncertainty_bonus)):
            raise ValueError(f"uncertainty_bonus must be >= 0, got {uncertainty_bonus!r}")
        self.sampling_temperature = float(sampling_temperature)
        self.uncertainty_bonus = float(uncertainty_bonus)
        super().__init__(bus, clock, symbol, agent_id or policy.agent, agent_index)
        self.policy = policy
        self.deterministic = deterministic
        self.vote = vote
        self._rng = rng
        self._field = _SLICE_FIELD[policy.agent]
        self._x = np.empty(len(policy.mean))
        self.decisions = 0

    def subscribe(self) -> None:
        self._bus.subscribe(Features, self.on_features, self.symbol)

    def on_features(self, features: Features) -> None:
        if not features.warm:
            return
        x = self._x
        x[:] = getattr(features, self._field)
        p0, p1, p2 = self.policy.decide(x).tolist()
        self.publish_decision(features, p0, p1, p2, entropy_nb(p0, p1, p2))

    def publish_decision(
        self, features: Features, p0: float, p1: float, p2: float, entropy: float
    ) -> None:
        """Publish the AgentAction of the policy output π = (p0, p1, p2), H(π) = ``entropy``."""
        rng = self._rng
        if rng is None or self.deterministic:
            action = 0 if p0 >= p1 and p0 >= p2 else (1 if p1 >= p2 else 2)  # first argmax
        else:
            action = self._sample(rng, p0, p1, p2, entropy)
        confidence = max(p0, p1, p2) - entropy
        if self.vote == "action":
            p0, p1, p2 = (float(action == 0), float(action == 1), float(action == 2))
        self.decisions += 1
        self.publish_vote(features.ts_event, p0, p1, p2, action, confidence)

    def sampling_distribution(
        self, p0: float, p1: float, p2: float, entropy: float
    ) -> tuple[float, float, float]:
        """SPEC 3's temperature-scaled distribution of a policy output (see the module)."""
        tau = self.sampling_temperature * (1.0 + self.uncertainty_bonus * entropy / _LOG3)
        if tau == 1.0:
            return p0, p1, p2
        # π^(1/τ) through logs, shifted by the largest so that nothing overflows
        logs = [math.log(q) / tau if q > 0.0 else -math.inf for q in (p0, p1, p2)]
        top = max(logs)
        weights = [math.exp(v - top) for v in logs]
        total = weights[0] + weights[1] + weights[2]
        return weights[0] / total, weights[1] / total, weights[2] / total

    def _sample(
        self, rng: np.random.Generator, p0: float, p1: float, p2: float, entropy: float
    ) -> int:
        q0, q1, _ = self.sampling_distribution(p0, p1, p2, entropy)
        u = rng.random()
        return 0 if u < q0 else (1 if u < q0 + q1 else 2)


_LOG3 = math.log(3.0)


class AgentPanel:
    """Learned agents that decide together: one numba call per bar for all their policies.

    Subscribed instead of its agents, on each warm ``Features`` event it runs every
    agent's policy in one call (:func:`_panel_nb`) and then lets each agent, in order,
    publish its AgentAction (:meth:`LearnedAgent.publish_decision`). The messages are the
    ones the agents publish when each is subscribed alone: the same values, the same
    sequence numbers, the same draws from a shared generator (no policy reads another
    agent's vote). What it saves is two numba calls and the per-agent input copies.
    """

    def __init__(self, agents: Sequence[LearnedAgent], shared: AgentPanel | None = None) -> None:
        """``shared``: a panel of the same policies (another symbol's) whose concatenated
        weights this one reads too, so that a universe's panels keep one copy of them
        (half a megabyte for the shipped checkpoint: one copy stays in the CPU's cache)."""
        if not agents:
            raise ValueError("an agent panel needs at least one agent")
        first = agents[0]
        for agent in agents:
            if agent._bus is not first._bus or agent.symbol != first.symbol:
                raise ValueError("the agents of a panel must share one bus and one symbol")
            if not isinstance(agent.policy, NumpyPolicy):
                raise ValueError(f"agent {agent.agent_id}: a panel needs NumpyPolicy policies")
        self.agents = list(agents)
        self._bus = first._bus
        self.symbol = first.symbol
        self._fields = tuple(agent._field for agent in agents)
        policies = [agent.policy for agent in agents]
        self._sizes = tuple(len(policy.mean) for policy in policies)
        self._layout: np.ndarray
        self._at: np.ndarray
        self._params: np.ndarray
        self._weights32: np.ndarray
        self._work: np.ndarray
        if shared is not None and [a.policy for a in shared.agents] == policies:
            self._layout, self._at = shared._layout, shared._at
            self._params, self._weights32 = shared._params, shared._weights32
            self._work = np.empty_like(shared._work)
        else:
            parts = [(p._params, p._weights32, p._work) for p in policies]
            layout = np.zeros((len(agents), 8), dtype=np.int64)
            at = np.zeros((len(agents), 4), dtype=np.int64)
            offsets = np.zeros(4, dtype=np.int64)
            for a, (policy, (params, weights, work)) in enumerate(
                zip(policies, parts, strict=True)
            ):
                sizes = (len(policy.mean), len(params), len(weights), len(work))
                layout[a, :4] = policy._layout
                layout[a, 4:] = sizes
                at[a] = offsets
                offsets += sizes
            self._layout = layout
            self._at = at
            self._params = np.concatenate([part[0] for part in parts])
            self._weights32 = np.concatenate([part[1] for part in parts])
            self._work = np.empty(int(offsets[3]))
        self._x = np.empty(sum(self._sizes))
        self._probabilities = np.empty(4 * len(agents))  # per agent: π, then H(π)
        getter = attrgetter(*self._fields)
        self._slices: Callable[[Features], tuple[tuple[float, ...], ...]] = (
            getter if len(agents) > 1 else lambda features: (getter(features),)
        )

    def subscribe(self) -> None:
        self._bus.subscribe(Features, self.on_features, self.symbol)

    def on_features(self, features: Features) -> None:
        if not features.warm:
            return
        slices = self._slices(features)
        if tuple(map(len, slices)) != self._sizes:
            self._raise_bad_inputs(features)
        self._x[:] = sum(slices, ())
        _panel_nb(
            self._x,
            self._params,
            self._weights32,
            self._layout,
            self._work,
            self._at,
            self._probabilities,
        )
        p = self._probabilities.tolist()
        for a, agent in enumerate(self.agents):
            agent.publish_decision(features, *p[4 * a : 4 * a + 4])

    def _raise_bad_inputs(self, features: Features) -> None:
        # called when some slice's length is not its policy's
        for field, size in zip(self._fields, self._sizes, strict=True):
            got = len(getattr(features, field))
            if got != size:
                raise ValueError(
                    f"Features.{field} at {features.ts_event} has {got} values; "
                    f"the agent's policy takes {size}"
                )
