"""ONNX imitators: a policy trained elsewhere (Stable-Baselines3, CleanRL, any torch module) audited from its graph
alone.

An ONNX file carries the whole network and runs in onnxruntime without its author's code, so
nothing a user names is imported or executed in Python. Taps are graph tensors exposed as extra
outputs at load time:

- ``head``: the logits output (metadata ``imitaudit.logits``, else the graph's first output), [B, A]:
  unnormalised log-probabilities of the ``A`` discrete actions (softmax gives the policy); for a ``Box`` env
  (metadata ``imitaudit.action_box``, a JSON object ``{"dims": d, "low": [...], "high": [...]}``, bounds null for an
  unbounded space), [B, 2d]: the Gaussian's mean and log standard deviation per dimension, before the squash into
  the bounds (:mod:`models.actions`);
- ``core``: the input of the last MatMul/Gemm node (the features the action layer reads);
- ``encoder``: the input of the MatMul/Gemm before it, unless that is the observation itself.

``imitaudit.taps`` (a JSON object, tap -> tensor name) overrides any of these. The observation
input is the graph input that is not a state, float32 [B, *obs_shape]. A recurrent policy names
its state tensors in ``imitaudit.state_inputs`` / ``imitaudit.state_outputs`` (comma-separated,
paired in order); each state input has one symbolic (batch) dimension and starts at zeros. The
env the policy acts in is ``imitaudit.env_id`` (and ``imitaudit.env_kwargs``, a JSON object).

Refused with one line, before a session is made: not an ONNX model, external data files,
operators outside the standard domains, more than :data:`MAX_PARAMS` weights, a declared
intermediate tensor over :data:`MAX_TENSOR` elements, oversized metadata, taps that do not exist.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
import threading
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.formats import CheckpointInfo
from models.imitator import ImitatorConfig
from models.policy import check_obs
from models.safetensors_io import strict_json

MAX_PARAMS = 50_000_000
"""Weights an ONNX imitator may hold (float32: 200 MB)."""
MAX_TENSOR = 50_000_000
"""Elements of any one declared tensor shape (symbolic dimensions counted as 1)."""
MAX_META_CHARS = 256 * 1024
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
ARCH = "onnx"


class _Runs:
    """Every onnxruntime run in flight in this process, so that another thread (a job's watchdog) can end them.

    onnxruntime checks a run's ``RunOptions.terminate`` between kernels, Loop and Scan iterations included, so a graph
    that would run for ever stops within one kernel of the call. While stopped, new runs are refused at once.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: set[Any] = set()
        self.stopped = False

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            for options in self.active:
                options.terminate = True

    def allow(self) -> None:
        with self.lock:
            self.stopped = False

    def run(self, session: Any, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[Any]:
        import onnxruntime as ort

        options = ort.RunOptions()
        options.log_severity_level = 4
        with self.lock:
            if self.stopped:
                raise InterruptedError("the imitator's ONNX graph was stopped")
            self.active.add(options)
        try:
            return session.run(outputs, feeds, options)
        except Exception:
            if options.terminate:
                raise InterruptedError("the imitator's ONNX graph was stopped mid-run") from None
            raise
        finally:
            with self.lock:
                self.active.discard(options)


RUNS = _Runs()


def stop_runs() -> None:
    """End every ONNX imitator's run in flight in this process, and refuse new ones until :func:`allow_runs`
    (they raise ``InterruptedError``). Safe to call from any thread."""
    RUNS.stop()


def allow_runs() -> None:
    """Let ONNX imitators run again after :func:`stop_runs`."""
    RUNS.allow()


def _run_failure(exc: Exception) -> str:
    """What went wrong in a run, in words the uploader can act on, without any value the graph computed: onnxruntime's
    messages quote shapes and sizes, which a graph can make out of anything it reads."""
    text = str(exc)
    node = re.search(r"running (\w+) node", text)
    return f"its {node.group(1)} node failed" if node else "onnxruntime stopped it"


class _Tap(nn.Module):
    """Where a tap's activations are handed over: its forward hook fires as a registry imitator's tap module's does."""

    def forward(self, x: Tensor) -> Tensor:
        return x


def _meta(model: Any) -> dict[str, str]:
    out = {p.key: p.value for p in model.metadata_props}
    if sum(len(k) + len(v) for k, v in out.items()) > MAX_META_CHARS:
        raise ValueError(f"metadata_props exceed {MAX_META_CHARS} characters")
    return out


def _dims(value_info: Any) -> list[int | str]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _subgraphs(attr: Any) -> list[Any]:
    return [attr.g] if attr.HasField("g") else list(attr.graphs)


def _graphs(model: Any) -> list[Any]:
    """Every graph of the model: the main graph and each If/Loop/Scan body, at any depth (functions' bodies
    included)."""
    todo, out = [model.graph], []
    nodes_of_functions = [n for f in model.functions for n in f.node]
    for node in nodes_of_functions:
        for attr in node.attribute:
            todo.extend(_subgraphs(attr))
    while todo:
        graph = todo.pop()
        out.append(graph)
        for node in graph.node:
            for attr in node.attribute:
                todo.extend(_subgraphs(attr))
    return out


def _tensors(model: Any, graphs: list[Any]) -> list[tuple[Any, int]]:
    """Every tensor the model stores, each with the elements it stands for: dense and sparse initializers of every
    graph,
    and tensor attributes (Constant nodes' among them) of every node, in graphs and in functions."""
    nodes = [n for g in graphs for n in g.node] + [n for f in model.functions for n in f.node]
    out: list[tuple[Any, int]] = []
    for graph in graphs:
        out += [(t, math.prod(t.dims)) for t in graph.initializer]
        for sparse in graph.sparse_initializer:  # onnxruntime makes these dense: they weigh their full shape
            out += [(sparse.values, math.prod(sparse.dims)), (sparse.indices, 0)]
    for node in nodes:
        for attr in node.attribute:
            tensors = ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
            sparse = ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(attr.sparse_tensors)
            out += [(t, math.prod(t.dims)) for t in tensors]
            out += [pair for sp in sparse for pair in ((sp.values, math.prod(sp.dims)), (sp.indices, 0))]
    return out


def _check_graph(model: Any) -> None:
    """Refuse what cannot run safely or at a bounded size (no session is made yet).

    Every graph (subgraphs and functions included) and every stored tensor is looked at: a tensor in an external file
    anywhere would let the graph read the server's files (onnxruntime resolves relative locations itself).
    """
    from onnx import TensorProto, shape_inference

    graphs = _graphs(model)
    nodes = [n for g in graphs for n in g.node] + [n for f in model.functions for n in f.node]
    domains = sorted(
        {n.domain for n in nodes if n.domain not in STANDARD_DOMAINS} | {f.domain for f in model.functions}
    )
    if domains:
        raise ValueError(
            f"operators outside the standard ONNX domains ({', '.join(d or '?' for d in domains)[:200]}) are refused"
        )
    tensors = _tensors(model, graphs)
    for tensor, _ in tensors:
        if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
            raise ValueError(
                f"tensor {tensor.name[:80]!r} lives in an external data file; export with the weights inside the .onnx"
            )
    params = sum(size for _, size in tensors)
    if params > MAX_PARAMS:
        raise ValueError(f"{params:,} weights; ONNX imitators may hold at most {MAX_PARAMS:,}")
    try:
        inferred = shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - a graph shape inference rejects is malformed input
        raise ValueError(
            "shape inference failed: the graph is malformed (onnx.shape_inference.infer_shapes shows where)"
        ) from None
    for vi in [*inferred.input, *inferred.value_info, *inferred.output]:
        size = math.prod(d if isinstance(d, int) and d > 0 else 1 for d in _dims(vi))
        if size > MAX_TENSOR:
            raise ValueError(f"tensor {vi.name[:80]!r} is declared with {size:,} elements; at most {MAX_TENSOR:,}")


def default_taps(model: Any, obs_input: str, logits: str) -> dict[str, str]:
    """Tap -> tensor: ``head`` the logits, ``core`` / ``encoder`` the inputs of the last two MatMul/Gemm nodes that the
    graph computes (never a graph input: a recurrent cell's state input is read by a MatMul too, but is no
    activation)."""
    produced = {o for n in model.graph.node for o in n.output}
    read = [
        n.input[0] for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input and n.input[0] in produced
    ]
    taps = {"head": logits}
    if read and read[-1] != obs_input:
        taps["core"] = read[-1]
    if len(read) > 1 and read[-2] != obs_input and read[-2] != read[-1]:
        taps["encoder"] = read[-2]
    return taps


class OnnxImitator(nn.Module):
    """An ONNX policy behind the imitator interface (see the module docstring for what the graph must hold).

    Stepping runs the session once per step; ``sequence`` runs a memoryless graph once over every real step
    and steps a recurrent one through time. Taps are the tensors ``tap_tensors`` names.

    Args:
        session: the onnxruntime session over the graph with the taps added as outputs.
        config: obs_dim and n_actions (``hidden``: the ``core`` tap's width, for reports).
        obs_input: the observation input's name; obs_shape: its per-step shape.
        logits: the logits output's name.
        tap_tensors: tap name -> tensor name; tap_widths: tap name -> features per step.
        states: (input name, output name, batch dimension, per-row shape) of each recurrent state.
        source: the file's bytes and name, that a copy in another process (a Ray task's) is loaded again from.
    """

    arch = ARCH

    def __init__(
        self,
        *,
        session: Any,
        config: ImitatorConfig,
        obs_input: str,
        obs_shape: tuple[int, ...],
        logits: str,
        tap_tensors: dict[str, str],
        tap_widths: dict[str, int],
        states: list[tuple[str, str, int, tuple[int, ...]]],
        source: tuple[bytes, str],
    ) -> None:
        nn.Module.__init__(self)
        self._source = source  # the checked file's bytes and name: a copy in another process is loaded again from them
        self.config, self.session = config, session
        self.obs_input, self.obs_shape, self.logits_name = obs_input, obs_shape, logits
        self.tap_tensors, self.tap_widths, self.states = dict(tap_tensors), dict(tap_widths), states
        self.tap_names = tuple(tap_tensors)
        self.recurrent = bool(states)
        for name in self.tap_names:
            self.add_module(name, _Tap())
        self._outputs = [logits, *[s[1] for s in states], *tap_tensors.values()]

    @property
    def taps(self) -> dict[str, nn.Module]:
        """Tap name -> the module whose output is the graph tensor read (fed after each run)."""
        return {name: getattr(self, name) for name in self.tap_names}

    def tap_sizes(self) -> dict[str, int]:
        return dict(self.tap_widths)

    def __reduce__(self) -> tuple:
        # a session does not pickle: a copy (a Ray task's) is rebuilt from the checked bytes, through the same checks
        return _rebuild, self._source

    def initial_state(self, batch: int) -> tuple[Tensor, ...] | None:
        if not self.states:
            return None
        out = []
        for _, _, dim, rest in self.states:
            shape = list(rest)
            shape.insert(dim, batch)
            out.append(torch.zeros(shape))
        return tuple(out)

    def select_state(self, state: Any, rows: Tensor) -> Any:
        if state is None:
            return None
        return tuple(s.index_select(dim, rows) for s, (_, _, dim, _) in zip(state, self.states))

    def _run(
        self, obs: Tensor, state: tuple[Tensor, ...] | None
    ) -> tuple[Tensor, tuple[Tensor, ...] | None, dict[str, Tensor]]:
        feeds = {self.obs_input: obs.detach().reshape(len(obs), *self.obs_shape).numpy().astype(np.float32, copy=False)}
        for s, (name, _, _, _) in zip(state or (), self.states):
            feeds[name] = s.numpy().astype(np.float32, copy=False)
        try:
            got = RUNS.run(self.session, self._outputs, feeds)
        except InterruptedError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own types; the message must not quote the graph's values
            raise ValueError(
                f"the imitator's ONNX graph failed on a batch of {len(obs)} observation(s): {_run_failure(exc)}"
            ) from None
        logits = torch.from_numpy(np.asarray(got[0], dtype=np.float32)).reshape(len(obs), -1)
        k = len(self.states)
        new_state = tuple(torch.from_numpy(np.asarray(g, dtype=np.float32)) for g in got[1 : 1 + k]) if k else None
        taps = {
            n: torch.from_numpy(np.asarray(g, dtype=np.float32)).reshape(len(obs), -1)
            for n, g in zip(self.tap_tensors, got[1 + k :])
        }
        return logits, new_state, taps

    def forward(self, obs: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        check_obs(self, obs, 2)
        if self.states and state is None:
            state = self.initial_state(len(obs))
        logits, state, taps = self._run(obs, state)
        for name, value in taps.items():
            getattr(self, name)(value)
        return logits, state

    def sequence(self, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        check_obs(self, obs, 3)
        b, t, _ = obs.shape
        if not self.states:
            rows = obs[mask] if mask is not None else obs.reshape(b * t, -1)
            width = self.config.head_width
            logits, _, taps = self._run(rows, None) if len(rows) else (torch.zeros(0, width), None, {})
            for name in self.tap_names:  # [N_real, F] with a mask (scattered back by the caller), else [B, T, F]
                value = taps.get(name, torch.zeros(0, self.tap_widths[name]))
                getattr(self, name)(value if mask is not None else value.reshape(b, t, -1))
            if mask is None:
                return logits.reshape(b, t, -1)
            out = obs.new_zeros(b, t, self.config.head_width)
            out[mask] = logits
            return out
        state, steps = self.initial_state(b), []
        per_tap: dict[str, list] = {n: [] for n in self.tap_names}
        for i in range(t):
            logits, state, taps = self._run(obs[:, i], state)
            steps.append(logits)
            for name, value in taps.items():
                per_tap[name].append(value)
        for name, values in per_tap.items():
            getattr(self, name)(torch.stack(values, dim=1))
        return torch.stack(steps, dim=1)


def _state_specs(graph: Any, meta: dict[str, str], name: str) -> list[tuple[str, str, int, tuple[int, ...]]]:
    ins = [s for s in meta.get("imitaudit.state_inputs", "").split(",") if s]
    outs = [s for s in meta.get("imitaudit.state_outputs", "").split(",") if s]
    if len(ins) != len(outs):
        raise ValueError(
            f"{name}: imitaudit.state_inputs names {len(ins)} tensors but imitaudit.state_outputs {len(outs)}"
        )
    inputs = {i.name: i for i in graph.input}
    outputs = {o.name for o in graph.output}
    specs = []
    for i, o in zip(ins, outs):
        if i not in inputs or o not in outputs:
            raise ValueError(f"{name}: state {i[:80]!r} -> {o[:80]!r} is not a graph input -> output pair")
        dims = _dims(inputs[i])
        symbolic = [k for k, d in enumerate(dims) if not isinstance(d, int) or d <= 0]
        if len(symbolic) != 1:
            raise ValueError(
                f"{name}: state input {i[:80]!r} needs exactly one symbolic (batch) dimension, has shape {dims}"
            )
        specs.append((i, o, symbolic[0], tuple(int(d) for k, d in enumerate(dims) if k != symbolic[0])))
    return specs


def _parse(data: bytes, name: str) -> Any:
    import onnx

    try:
        return onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf's decode errors have no common base
        raise ValueError(f"{name}: not a valid ONNX model ({str(exc).splitlines()[0][:200]})") from None


def onnx_metadata(data: bytes, name: str = "upload") -> dict[str, str]:
    """The model's metadata_props (bounded), without checking or running its graph.

    Raises:
        ValueError: not an ONNX model, or metadata over the bound.
    """
    try:
        return _meta(_parse(data, name))
    except ValueError as exc:
        raise ValueError(str(exc) if str(exc).startswith(name) else f"{name}: {exc}") from None


def load_onnx_bytes(
    data: bytes, name: str = "upload", *, threads: int | None = None
) -> tuple[OnnxImitator, CheckpointInfo]:
    """An ONNX imitator from the bytes of a ``.onnx`` file.

    Raises:
        ValueError: one line naming the problem (see the module docstring).
    """
    model = _parse(data, name)
    meta = _checked(model, name)
    env_id, env_kwargs, named_taps = _env_metadata(meta, name)
    box = _action_box(meta, name)
    states = _state_specs(model.graph, meta, name)
    obs_vi, obs_shape = _observation_input(model.graph, states, name)
    logits = meta.get("imitaudit.logits") or model.graph.output[0].name
    taps = _wire_taps(model, obs_vi.name, logits, named_taps, name)
    session = _session(model, name, threads)
    n_out, widths = _probe(session, name, obs_vi.name, obs_shape, states, logits, taps)
    if box is not None and n_out != 2 * box["dims"]:
        raise ValueError(
            f"{name}: the graph's logits have {n_out} numbers per row; a Gaussian over {box['dims']} action "
            f"dimension(s) needs {2 * box['dims']} (the means, then the log standard deviations)"
        )
    n_actions = n_out if box is None else box["dims"]
    config = ImitatorConfig(
        obs_dim=math.prod(obs_shape),
        n_actions=n_actions,
        hidden=max(1, widths.get("core", n_out)),
        heads=1,
        continuous=box is not None,
        action_low=None if box is None else box["low"],
        action_high=None if box is None else box["high"],
    )
    imitator = OnnxImitator(
        session=session,
        config=config,
        obs_input=obs_vi.name,
        obs_shape=obs_shape,
        logits=logits,
        tap_tensors=taps,
        tap_widths=widths,
        states=states,
        source=(data, name),
    )
    info = CheckpointInfo(
        arch=ARCH,
        config=config,
        env_id=env_id,
        env_kwargs=env_kwargs,
        obs_shape=obs_shape,
        n_actions=n_actions,
        provenance={
            "onnx": {
                "producer": model.producer_name[:100],
                "opset": [o.version for o in model.opset_import][:4],
                "taps": taps,
                "recurrent": bool(states),
            }
        },
        n_params=sum(math.prod(i.dims) for i in model.graph.initializer),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return imitator, info


def _checked(model: Any, name: str) -> dict[str, str]:
    """The metadata of a parsed graph that passes :func:`_check_graph` (nothing external, nothing custom)."""
    if not model.graph.node or not model.graph.output:
        raise ValueError(f"{name}: not a valid ONNX model (no graph nodes or outputs)")
    try:
        meta = _meta(model)
        _check_graph(model)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return meta


def _env_metadata(meta: dict[str, str], name: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(env id, env kwargs, tap name -> tensor name) from the graph's imitaudit metadata."""
    env_id = meta.get("imitaudit.env_id", "")
    if not env_id:
        raise ValueError(
            f"{name}: metadata_props lack imitaudit.env_id (stamp it: imitaudit convert --from onnx {name} --env ID "
            f"--out X.onnx)"
        )
    try:
        env_kwargs = strict_json(meta.get("imitaudit.env_kwargs", "{}"))
        named_taps = strict_json(meta.get("imitaudit.taps", "{}"))
    except ValueError as exc:
        raise ValueError(f"{name}: malformed metadata ({str(exc).splitlines()[0][:200]})") from None
    if (
        not isinstance(env_kwargs, dict)
        or not isinstance(named_taps, dict)
        or not all(isinstance(v, str) for v in named_taps.values())
    ):
        raise ValueError(
            f"{name}: imitaudit.env_kwargs and imitaudit.taps must be JSON objects (taps: name -> tensor name)"
        )
    return env_id, env_kwargs, named_taps


def _action_box(meta: dict[str, str], name: str) -> dict[str, Any] | None:
    """``imitaudit.action_box`` checked (dims a positive int within the limits, bounds one finite number per dimension
    with low < high, or both null), or None for a discrete policy."""
    from models.imitator import LIMITS

    raw = meta.get("imitaudit.action_box")
    if raw is None:
        return None
    try:
        box = strict_json(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: malformed imitaudit.action_box ({str(exc).splitlines()[0][:200]})") from None
    dims = box.get("dims") if isinstance(box, dict) else None
    if (
        not isinstance(dims, int)
        or isinstance(dims, bool)
        or not 1 <= dims <= LIMITS["n_actions"]
        or set(box) - {"dims", "low", "high"}
    ):
        raise ValueError(
            f'{name}: imitaudit.action_box must be {{"dims": d, "low": [...], "high": [...]}} with 1 <= d <= '
            f"{LIMITS['n_actions']:,}"
        )
    try:
        ImitatorConfig(
            obs_dim=1, n_actions=dims, continuous=True, action_low=box.get("low"), action_high=box.get("high")
        )
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: imitaudit.action_box: {str(exc).splitlines()[0][:200]}") from None
    return {"dims": dims, "low": box.get("low"), "high": box.get("high")}


def _observation_input(graph: Any, states: list, name: str) -> tuple[Any, tuple[int, ...]]:
    """The graph's one observation input (besides its recurrent states) and its fixed per-row shape."""
    inits = {i.name for i in graph.initializer}
    obs_inputs = [i for i in graph.input if i.name not in inits and i.name not in {s[0] for s in states}]
    if len(obs_inputs) != 1:
        raise ValueError(f"{name}: needs exactly one observation input besides the states, found {len(obs_inputs)}")
    obs_vi = obs_inputs[0]
    obs_dims = _dims(obs_vi)
    if len(obs_dims) < 2 or not all(isinstance(d, int) and d > 0 for d in obs_dims[1:]):
        raise ValueError(
            f"{name}: observation input {obs_vi.name[:80]!r} must be [batch, *obs_shape] with a fixed obs_shape, got "
            f"{obs_dims}"
        )
    return obs_vi, tuple(int(d) for d in obs_dims[1:])


def _wire_taps(model: Any, obs_input: str, logits: str, named_taps: dict[str, str], name: str) -> dict[str, str]:
    """Tap name -> tensor name (the defaults, then the metadata's), each tensor made a graph output so a run returns
    it."""
    from onnx import helper

    graph = model.graph
    produced = {o for n in graph.node for o in n.output}
    taps = {**default_taps(model, obs_input, logits), **named_taps}
    missing = sorted(f"{tap}={tensor}" for tap, tensor in taps.items() if tensor not in produced)
    if logits not in produced:
        raise ValueError(f"{name}: the logits output {logits[:80]!r} is not computed by the graph")
    if missing:
        raise ValueError(f"{name}: tap tensor(s) not in the graph: {', '.join(missing)[:300]}")
    have = {o.name for o in graph.output}
    for tensor in dict.fromkeys(taps.values()):
        if tensor not in have:
            graph.output.append(helper.make_empty_tensor_value_info(tensor))
            have.add(tensor)
    return taps


PROBE_ROWS = (1, 256)
"""Batch sizes a graph is run at before it is accepted: one observation, and an audit's batch of episodes (a graph whose
cost grows with the batch shows it here rather than in a job)."""


def _probe(
    session: Any, name: str, obs_input: str, obs_shape: tuple[int, ...], states: list, logits: str, taps: dict[str, str]
) -> tuple[int, dict[str, int]]:
    """Run the graph on zeros at each of :data:`PROBE_ROWS`; the number of actions and each tap's width per row.

    The logits must be finite floats of shape [rows, A] at every batch size, with A within the imitator limits.
    """
    from models.imitator import LIMITS

    seen: tuple[int, dict[str, int]] | None = None
    for rows in PROBE_ROWS:
        feeds = {obs_input: np.zeros((rows, *obs_shape), dtype=np.float32)}
        for i, _, dim, rest in states:
            shape = list(rest)
            shape.insert(dim, rows)
            feeds[i] = np.zeros(shape, dtype=np.float32)
        try:
            got = RUNS.run(session, [logits, *taps.values()], feeds)
        except InterruptedError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a graph that cannot run
            raise ValueError(
                f"{name}: the graph does not run on a batch of {rows} observation(s): {_run_failure(exc)}"
            ) from None
        out = [np.asarray(g) for g in got]
        if out[0].dtype.kind != "f":
            raise ValueError(f"{name}: the graph's logits are not floating-point numbers")
        if out[0].ndim < 1 or out[0].shape[0] != rows or out[0].size == 0 or out[0].size % rows:
            raise ValueError(
                f"{name}: the graph's logits do not have one row per observation (they must be [batch, actions])"
            )
        if not np.isfinite(out[0]).all():
            raise ValueError(f"{name}: the graph's logits are not finite on an all-zeros observation")
        n_actions = out[0].size // rows
        if n_actions > LIMITS["n_actions"] or any(
            g.size % rows or g.size // rows > LIMITS["hidden"] or g.dtype.kind != "f" for g in out[1:]
        ):
            raise ValueError(
                f"{name}: the graph's logits or taps have the wrong width (at most {LIMITS['n_actions']:,} "
                f"actions and {LIMITS['hidden']:,} floats per tap and row)"
            )
        widths = {tap: g.size // rows for tap, g in zip(taps, out[1:])}
        if seen is not None and seen != (n_actions, widths):
            raise ValueError(f"{name}: the graph's logits or taps change width with the batch size")
        seen = (n_actions, widths)
    assert seen is not None
    return seen


def _rebuild(data: bytes, name: str) -> OnnxImitator:
    """An unpickled :class:`OnnxImitator`: loaded again from its file's bytes, at this process's torch thread count."""
    return load_onnx_bytes(data, name)[0]


def _session(model: Any, name: str, threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # torch's threads run between sessions' runs (sampling, taps): spinning pool threads would contend with them
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory(prefix="imitaudit-onnx-") as empty:
        # a second wall behind _check_graph: whatever names a file resolves it in a fresh empty folder, not the cwd
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path", empty)
        try:
            return ort.InferenceSession(
                model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception:  # noqa: BLE001 - its message may quote values the graph's constants computed
            raise ValueError(
                f"{name}: onnxruntime cannot load the graph (onnx.checker.check_model(..., full_check=True) shows why)"
            ) from None
