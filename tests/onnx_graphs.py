"""Hand-built ONNX graphs that attack the intake: external data hidden in subgraphs, sparse tensors and Constant nodes
(each reads ``secret.txt`` from the working directory into the logits), operators of other domains in branches, and
logits that are computed, NaN, of a fixed batch or strings."""

from onnx import TensorProto, helper


def external(name: str, dtype: int = TensorProto.UINT8, n: int = 3, location: str = "secret.txt") -> TensorProto:
    """A tensor whose bytes live in ``location``, relative: what onnxruntime would read from its working directory."""
    t = TensorProto(name=name, data_type=dtype, dims=[n], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", str(n))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def policy_model(nodes, inits=(), sparse=(), out_dims=("batch", 3), functions=()):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(out_dims))],
        initializer=list(inits),
        sparse_initializer=list(sparse),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], functions=list(functions))
    helper.set_model_props(model, {"imitaudit.env_id": "CartPole-v1"})
    return model


def secret_branch():
    """If(true) whose then-branch holds an external initializer: the 3 bytes become the logits."""
    then = helper.make_graph(
        [helper.make_node("Cast", ["s"], ["o"], to=TensorProto.FLOAT)],
        "then",
        [],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, [3])],
        initializer=[external("s")],
    )
    other = helper.make_graph(
        [helper.make_node("Constant", [], ["o2"], value=helper.make_tensor("c", TensorProto.FLOAT, [3], [0, 0, 0]))],
        "else",
        [],
        [helper.make_tensor_value_info("o2", TensorProto.FLOAT, [3])],
    )
    return policy_model(
        [
            helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("b", TensorProto.BOOL, [], [True])),
            helper.make_node("If", ["cond"], ["logits"], then_branch=then, else_branch=other),
        ],
        out_dims=(3,),
    )


def secret_sparse():
    sparse = helper.make_sparse_tensor(external("sv"), helper.make_tensor("si", TensorProto.INT64, [3], [0, 1, 2]), [3])
    return policy_model(
        [helper.make_node("Cast", ["sv"], ["logits"], to=TensorProto.FLOAT)], sparse=[sparse], out_dims=(3,)
    )


def secret_constant():
    return policy_model(
        [
            helper.make_node("Constant", [], ["c"], value=external("k")),
            helper.make_node("Cast", ["c"], ["logits"], to=TensorProto.FLOAT),
        ],
        out_dims=(3,),
    )


def microsoft_in_branch():
    then = helper.make_graph(
        [helper.make_node("Gelu", ["x"], ["o"], domain="com.microsoft")],
        "then",
        [],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, [3])],
        initializer=[helper.make_tensor("x", TensorProto.FLOAT, [3], [1, 2, 3])],
    )
    m = secret_branch()
    m.graph.node[1].attribute[0].g.CopyFrom(then)
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return m


def computed_width(width):
    """Logits whose width the graph computes (ConstantOfShape from a stored number), and an obs-independent batch."""
    return policy_model(
        [
            helper.make_node("Constant", [], ["n"], value=helper.make_tensor("n0", TensorProto.INT64, [2], [1, width])),
            helper.make_node(
                "ConstantOfShape", ["n"], ["logits"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])
            ),
        ],
        out_dims=(1, width),
    )


def nan_logits():
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 2], [float("nan")] * 8)
    return policy_model([helper.make_node("MatMul", ["obs", "w"], ["logits"])], inits=[w], out_dims=("batch", 2))


def string_logits():
    m = policy_model([helper.make_node("Cast", ["obs"], ["logits"], to=TensorProto.STRING)], out_dims=("batch", 4))
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.STRING
    return m
