"""DLA layer selection (export/dla_layers.py) on real exported graphs: the 2-D audio pathways'
nodes, and nothing of the video pathways, the MMTM fusion, the head or the input normalisation.

TensorRT is not needed: the selection reads node names and output ranks, which the tests take
from the exported ONNX graphs (the ONNX parser names TensorRT layers after these nodes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mvrt.export.dla_layers import LayerPlacement, audio_pathway_layer, onnx_node_name, place_layers

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")


def _graph(path: Path):
    """(model, node name -> output rank) of an exported graph, ranks by ONNX shape inference."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*graph.value_info, *graph.output, *graph.input]}
    return model, {n.name: ranks.get(n.output[0], -1) for n in graph.node}


def _selected(model, ranks, config) -> set[str]:
    return {n.name for n in model.graph.node if audio_pathway_layer(n.name, ranks[n.name], config)}


def _fed_only_by_audio(model, ranks, config) -> set[str]:
    """The oracle, from connectivity: nodes whose feature maps come from audio inputs only. MMTM's
    side inputs (pooled vectors and gates, rank < 4, in its `A__V.N` scopes) are not followed: they
    are where video reaches audio."""
    producer = {out: n for n in model.graph.node for out in n.output}
    sources = {i.name: {i.name} for i in model.graph.input}
    for node in model.graph.node:  # exported graphs are topologically sorted
        followed = [t for t in node.input if not (t in producer and "__" in producer[t].name
                                                  and ranks[producer[t].name] < 4)]
        found = set().union(*(sources.get(t, set()) for t in followed))
        for out in node.output:
            sources[out] = found
    audio = set(config.audio_inputs)
    return {n.name for n in model.graph.node if sources[n.output[0]] and sources[n.output[0]] <= audio}


@pytest.fixture(scope="module")
def graphs(tiny_models):
    """The session's tiny exported graphs (contract 2): slowfast and musicvideo, with MMTM."""
    return {arch: (tm.onnx, tm.config.replace(contract=2)) for arch, tm in tiny_models.items()}


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_the_selection_is_the_audio_fed_pathway_nodes_less_the_fusion_and_head(graphs, arch):
    path, config = graphs[arch]
    model, ranks = _graph(path)
    selected = _selected(model, ranks, config)
    oracle = {n for n in _fed_only_by_audio(model, ranks, config)
              if "__" not in n and "/head/" not in n and not n.startswith("/Constant")}
    assert selected == oracle and len(selected) > 50
    assert {n.op_type for n in model.graph.node if n.name in selected} == {"Conv", "Relu", "MaxPool", "Add", "Concat"}


@pytest.mark.parametrize("arch", ["slowfast", "musicvideo"])
def test_audio_pathways_are_every_2d_conv_and_no_fusion_video_or_head(graphs, arch):
    path, config = graphs[arch]
    model, ranks = _graph(path)
    selected = _selected(model, ranks, config)
    nodes = {n.name: n for n in model.graph.node}
    convs_2d = {n.name for n in nodes.values() if n.op_type == "Conv" and ranks[n.name] == 4}
    assert convs_2d and convs_2d <= selected  # every audio convolution
    assert all(ranks[n] == 4 for n in selected)  # (B, C, mel, time) maps only: no video
    mmtm = {n for n in nodes if "__video" in n}  # the fusion modules: audio_slow__video_slow.N, audio__video.N
    assert mmtm and not mmtm & selected
    assert not {n for n in nodes if "/head/" in n} & selected
    front = {n.name for n in nodes.values() if "video" in n.input}  # the graph's own uint8 normalisation reads it
    assert front and not front & selected


def test_contract_1_names_are_read_alike(graphs):
    """Contract-1 graphs name nodes `/stem/...`, `/stages.N/...` as contract 2 does (seen in exports)."""
    _, config = graphs["musicvideo"]
    assert audio_pathway_layer("/stages.2/stages.2.0/branch_a/branch_a.0/branch_a.0.0/Conv", 4, config)
    assert not audio_pathway_layer("/stages.2/stages.2.0_1/branch_a/branch_a.0/branch_a.0.0/Conv", 5, config)
    assert not audio_pathway_layer("/audio__video.0/Mul_2", 4, config)


def test_names_of_weights_and_tensorrt_metadata(graphs):
    _, config = graphs["slowfast"]
    assert audio_pathway_layer("pathways.audio_fast.stages.1.0.smooth.0.weight", 4, config)
    assert audio_pathway_layer("network.pathways.audio_fast.stages.1.0.smooth.0.weight", 4, config)  # older exports
    assert not audio_pathway_layer("pathways.video_slow.stages.1.0.smooth.0.weight", 5, config)
    assert audio_pathway_layer("/stem/stem.0/stem.0.0/Conv", 4, config)
    assert not audio_pathway_layer("/input_front/Mul", 5, config)
    assert onnx_node_name("[ONNX Layer: /network/stem/stem.0/stem.0.0/Conv]") == "/network/stem/stem.0/stem.0.0/Conv"
    assert audio_pathway_layer("[ONNX Layer: /network/stem/stem.0/stem.0.0/Conv]", 4, config)
    assert not audio_pathway_layer("[ONNX Layer: /network/stem/stem.0/stem.0.0_2/Conv]", 5, config)
    assert not audio_pathway_layer("/network/audio_slow__video_slow.0/Mul_2", 4, config)  # MMTM gating
    assert not audio_pathway_layer("/network/stages.0", 4, config)  # a scope alone is no layer


def test_place_layers_counts_what_the_dla_takes_and_what_falls_back(graphs):
    path, config = graphs["slowfast"]
    model, ranks = _graph(path)
    ops = [n.op_type for n in model.graph.node]
    layers = [((n.name, f"[ONNX Layer: {n.name}]"), ranks[n.name]) for n in model.graph.node]
    chosen, placement = place_layers(layers, config, lambda i: ops[i] != "Concat")  # say the DLA refuses Concat
    audio = _selected(model, ranks, config)
    concat = sum(1 for n in model.graph.node if n.name in audio and n.op_type == "Concat")
    assert placement == LayerPlacement(dla=len(audio) - concat, gpu=len(ops) - len(audio), audio_on_gpu=concat)
    assert {model.graph.node[i].name for i in chosen} == audio - {n.name for n in model.graph.node if n.op_type == "Concat"}
    assert placement.as_dict() == {"dla": placement.dla, "gpu": placement.gpu, "audio_on_gpu": concat}
